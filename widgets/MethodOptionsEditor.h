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
// temperature, initialisation and memory options (side checkpoint, side attention, ladder dtype, side
// heads); the Adapter hidden size; LoRA's (and QLoRA's) rank, alpha, dropout and targets; the prompt count;
// "freeze the first N layers" for every baseline; the frozen backbone's storage (fp32, bf16, int8, int4
// with its group size) for every method but full. options() returns a MethodOptions with the fields of the
// chosen method set from the widgets and the others at their defaults.
class MethodOptionsEditor : public QWidget {
    Q_OBJECT

public:
    explicit MethodOptionsEditor(QWidget* parent = nullptr);

    MethodOptions options() const;
    void setOptions(const MethodOptions& options);

    // The backbone depth (encoder layers; the side layers and the freeze limit follow it).
    void setLayerCount(int layers);
    // The backbone's kind: a decoder-only backbone's LoRA targets are q, k, v, o, gate, up, down (T5's: q, k,
    // v, o, wi, wo), and LST's T5-only options are disabled.
    void setArchitecture(bool decoderOnly);
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
    // The page of a method id (qlora shares LoRA's).
    int pageOf(const QString& method) const;
    // The backbone storage row: shown for every method but full; qlora offers int8 and int4 only.
    void updateBackboneStorage();

    QComboBox* m_method = nullptr;
    QStackedWidget* m_pages = nullptr;
    QLabel* m_description = nullptr;
    QSpinBox* m_freeze = nullptr;
    QLabel* m_freezeLabel = nullptr;
    // every method but full: the frozen backbone's storage
    QComboBox* m_backboneDtype = nullptr;
    QLabel* m_backboneDtypeLabel = nullptr;
    QComboBox* m_quantGroupSize = nullptr;
    QString m_lastMethod; // the method shown before the current one (leaving qlora resets its int4)
    // ladder
    QSpinBox* m_r = nullptr;
    KeepListEditor* m_keep = nullptr;
    QDoubleSpinBox* m_gateTemperature = nullptr;
    QComboBox* m_init = nullptr;
    QSpinBox* m_fisherSamples = nullptr;
    QComboBox* m_ablation = nullptr;
    QCheckBox* m_sideCheckpoint = nullptr;
    QComboBox* m_sideAttention = nullptr;
    QComboBox* m_ladderDtype = nullptr;
    QSpinBox* m_sideHeads = nullptr;
    // adapter
    QSpinBox* m_hidden = nullptr;
    QComboBox* m_activation = nullptr;
    // lora
    QSpinBox* m_rank = nullptr;
    QDoubleSpinBox* m_alpha = nullptr;
    QDoubleSpinBox* m_dropout = nullptr;
    std::map<std::string, QCheckBox*> m_targets;
    bool targetShown(const std::string& target) const;
    bool m_decoder = false;
    bool m_architectureSet = false;
    QCheckBox* m_loraBitfit = nullptr;
    // prompt
    QSpinBox* m_prompts = nullptr;
};

} // namespace ladder::widgets
