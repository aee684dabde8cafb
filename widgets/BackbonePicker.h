#pragma once

#include <cstdint>
#include <optional>

#include <QString>
#include <QWidget>

#include "model/BackboneShape.h"
#include "model/T5Config.h"
#include "model/llama/LlamaConfig.h"

class QComboBox;
class QFileSystemWatcher;
class QLabel;
class QPushButton;
class QTimer;

namespace ladder::widgets {

// What the picker shows about a backbone, read from its config.json (a small file: no weights are
// loaded): a T5 (model_type t5) or a decoder of the Llama family (llama, mistral, qwen2). Parameters are
// counted from the shape (T5Config / LlamaConfig::parameterCount()).
struct BackboneInfo {
    QString id; // "demo" or the folder
    QString folder; // where config.json is
    std::optional<T5Config> config; // a T5 backbone's
    std::optional<LlamaConfig> llama; // a decoder-only backbone's
    BackboneShape shape; // either's sizes (architecture "t5", "llama", "mistral", "qwen2")
    std::int64_t parameters = 0;
    QString storedDtype; // config.json's torch_dtype ("float32" when absent)
    QString error; // why it cannot be used; empty when it can

    // Reads <folder>/config.json; error set (naming the file) when it is missing or invalid.
    static BackboneInfo read(const QString& id, const QString& folder);
    QString summary() const;
    // config.json was read (T5 or decoder), whether or not the folder is complete.
    bool hasConfig() const { return config.has_value() || llama.has_value(); }
    // Layers a side network may keep: T5's min(encoder, decoder), a decoder's layers.
    int keepableLayers() const;
};

// Backbone picker: the built-in demo backbone first, then the local HF folders the user added (kept in
// QSettings by the caller through foldersChanged()); a line with parameters, dtype and weight memory.
// The demo's folder is watched (QFileSystemWatcher on it, or on its nearest existing parent while it does
// not exist): when `ladder demo` publishes it, the picker reads it again without a restart. It also reads
// again when the application becomes active (a watcher can miss changes on network file systems).
class BackbonePicker : public QWidget {
    Q_OBJECT

public:
    explicit BackbonePicker(QWidget* parent = nullptr);

    // "demo" or a folder path.
    QString backbone() const;
    // Selects `backbone`, adding a folder that is not listed yet; false (selection unchanged) when a folder
    // has no valid config.json, with *error naming the file.
    bool setBackbone(const QString& backbone, QString* error = nullptr);
    // Adds a folder (most recent first), without selecting it unless select is true.
    bool addFolder(const QString& folder, bool select, QString* error = nullptr);
    QStringList folders() const;

    const BackboneInfo& info() const { return m_info; }
    // The folders the watcher watches now (tests).
    QStringList watchedPaths() const;

public Q_SLOTS:
    // Reads the selected backbone's config again; backboneChanged() when what it says changed.
    void refresh();

Q_SIGNALS:
    void backboneChanged();
    void foldersChanged(const QStringList& folders);
    // A folder the user chose with the dialog could not be used.
    void problem(const QString& message);

private:
    void chooseFolder();
    void selectionChanged();
    void watchDemo();

    QComboBox* m_combo = nullptr;
    QPushButton* m_add = nullptr;
    QLabel* m_details = nullptr;
    QFileSystemWatcher* m_watcher = nullptr;
    QTimer* m_settle = nullptr; // coalesces a burst of file events into one read
    BackboneInfo m_info;
};

} // namespace ladder::widgets
