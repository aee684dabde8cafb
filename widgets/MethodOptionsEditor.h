#pragma once

#include <map>
#include <string>

#include <QWidget>

#include "peft/MethodOptions.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QSpinBox;
class QStackedWidget;

namespace ladder::widgets {

class KeepListEditor;

// The method picker and each method's options (ladder::MethodOptions): LST's r, kept side layers, gate
// temperature and initialisation; the Adapter hidden size; LoRA's rank, alpha, dropout and targets; the
// prompt count; "freeze the first N layers" for every baseline. options() returns a MethodOptions with
// the fields of the chosen method set from the widgets and the others at their defaults.
class MethodOptionsEditor : public QWidget {
    Q_OBJECT

public:
    explicit MethodOptionsEditor(QWidget* parent = nullptr);

    MethodOptions options() const;
    void setOptions(const MethodOptions& options);

    // The backbone depth (encoder layers; the side layers and the freeze limit follow it).
    void setLayerCount(int layers);
    // A problem a widget can see without a backbone (e.g. no side layer kept); empty when none.
    QString problem() const;

    QString method() const;
    KeepListEditor* keepEditor() const { return m_keep; }

Q_SIGNALS:
    void changed();

private:
    QWidget* makeLadderPage();
    QWidget* makeAdapterPage();
    QWidget* makeLoraPage();
    QWidget* makePromptPage();
    QWidget* makeEmptyPage(const QString& text);
    void methodChosen();
    void watch(QSpinBox* box);
    void watch(QDoubleSpinBox* box);
    void watch(QComboBox* box);
    void watch(QCheckBox* box);

    QComboBox* m_method = nullptr;
    QStackedWidget* m_pages = nullptr;
    QLabel* m_description = nullptr;
    QSpinBox* m_freeze = nullptr;
    QLabel* m_freezeLabel = nullptr;
    // ladder
    QSpinBox* m_r = nullptr;
    KeepListEditor* m_keep = nullptr;
    QDoubleSpinBox* m_gateTemperature = nullptr;
    QComboBox* m_init = nullptr;
    QSpinBox* m_fisherSamples = nullptr;
    QComboBox* m_ablation = nullptr;
    // adapter
    QSpinBox* m_hidden = nullptr;
    QComboBox* m_activation = nullptr;
    // lora
    QSpinBox* m_rank = nullptr;
    QDoubleSpinBox* m_alpha = nullptr;
    QDoubleSpinBox* m_dropout = nullptr;
    std::map<std::string, QCheckBox*> m_targets;
    QCheckBox* m_loraBitfit = nullptr;
    // prompt
    QSpinBox* m_prompts = nullptr;
};

} // namespace ladder::widgets
