#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include <QWidget>

#include "train/RunEstimate.h"
#include "train/RunSpec.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;

namespace ladder::widgets {

class BackbonePicker;
class ComputeDeviceModel;
class MemoryEstimateView;
struct BackboneInfo;
class MethodOptionsEditor;
class TaskPicker;

// The experiment form: backbone, task, method and its options, training settings, device and seeds.
// It edits a run spec, the JSON `ladder train --config` reads: specJson() writes it, setSpecJson() shows
// one, presets are such files. Every change is validated with RunSpec::fromJson (and the method options
// against the backbone's config when it is known); the first problem is shown under the form and the
// Run button is disabled while there is one. Several seeds ("0, 1, 2" or "0-2") make one run each.
class ExperimentForm : public QWidget {
    Q_OBJECT

public:
    explicit ExperimentForm(QWidget* parent = nullptr);

    // The device list (CPU and each CUDA device with its free memory) comes from this model.
    void setDeviceModel(ComputeDeviceModel* model);

    // The run spec of the form with the first seed (what a preset holds).
    nlohmann::json specJson() const;
    // Shows a run spec. The JSON is validated first (RunSpec::fromJson): on an error nothing changes and
    // *error names the field. A folder backbone that is not listed yet is added.
    bool setSpecJson(const nlohmann::json& spec, QString* error = nullptr);

    // One validated spec per seed; false with *error (the first problem) when the form is not valid.
    bool specs(std::vector<RunSpec>* specs, QString* error = nullptr) const;
    bool isValid() const { return m_problem.isEmpty(); }
    QString problem() const { return m_problem; }
    // The name a run of the form gets when the Name field is empty (RunSpec::defaultName of the first seed).
    QString defaultRunName() const;

    // Presets: a run spec JSON file (pretty-printed). Errors name the file.
    bool savePreset(const QString& path, QString* error = nullptr) const;
    bool loadPreset(const QString& path, QString* error = nullptr);

    // The spec preselected on a first launch: the demo backbone and the demo supersense task with LST, and
    // training settings sized so one click trains for a few minutes on a CPU.
    static nlohmann::json firstLaunchSpec();

    // "0, 1, 2", "0-2" or "3" -> seeds; false with *error for anything else.
    static bool parseSeeds(const QString& text, std::vector<std::uint64_t>* seeds, QString* error = nullptr);

    BackbonePicker* backbonePicker() const { return m_backbone; }
    TaskPicker* taskPicker() const { return m_task; }
    MethodOptionsEditor* methodEditor() const { return m_method; }
    QPushButton* runButton() const { return m_run; }
    MemoryEstimateView* memoryEstimate() const { return m_estimate; }
    // The padded lengths of the task's longest training batch that the estimate uses, once measured (the
    // task is tokenised on a worker thread whenever the backbone, the task or the length limits change).
    const std::optional<TrainingLengths>& trainingLengths() const { return m_lengths; }
    QLabel* lengthsLabel() const { return m_lengthsLabel; }
    // The memory-estimate input of the form as it stands: its method, batch, dtype and device at the task's
    // measured lengths when known (else max_source_length and a short label), on the backbone's config;
    // nothing without a config, and nothing for a vision-and-language task (not priced yet).
    std::optional<MemoryEstimateInput> estimateInput() const;
    // What the estimate area (and Fit to device) says for a vision-and-language task instead of a figure.
    static QString vlNoEstimateMessage();
    QPushButton* fitButton() const { return m_fit; }
    QLineEdit* budgetEdit() const { return m_budget; }
    QLabel* fitLabel() const { return m_fitLabel; }

public Q_SLOTS:
    void savePresetWithDialog();
    void loadPresetWithDialog();
    // Re-validates and updates the problem line and the Run button.
    void revalidate();
    // "Fit to device" (core/train/MemoryPlan.h, fitToBudget): sets the batch to the largest whose estimated
    // peak fits the budget (the budget field, else the chosen device's free memory: a CUDA device's, or the
    // CPU's available RAM); when even batch 1 does not fit, the memory options with the fewest changes that
    // fit, and with them the largest batch. fitLabel() says what it chose, or why nothing fits.
    void fitToDevice();

Q_SIGNALS:
    // Run pressed (or Ctrl+Enter): the caller enqueues specs().
    void runRequested();
    void specChanged();
    // A message for the user (a preset that could not be read, a backbone folder that is not usable).
    void problemReported(const QString& message);
    // The preset folder the user last chose, for the settings.
    void presetFolderChosen(const QString& folder);

private:
    QWidget* makeTrainingGroup();
    void updateNamePlaceholder();
    void backboneChanged();
    void fillDevices();
    void updateEstimate();
    // estimateInput() for a spec of the form (when it validates) on the picked backbone (its config.json
    // read: T5 or a decoder-only one).
    MemoryEstimateInput formEstimateInput(const std::optional<RunSpec>& spec, const BackboneInfo& info) const;
    // The budget of Fit to device in bytes, and its name for the message; 0 with *error when there is none.
    std::uint64_t fitBudget(QString* name, QString* error) const;
    // Starts measuring the training lengths of `spec`'s task with the backbone's tokenizer, off the GUI
    // thread, unless they are known (or being measured) for `key` already.
    void measureLengths(const RunSpec& spec, const QString& key);
    nlohmann::json specJsonForSeed(std::uint64_t seed) const;
    QString computeProblem() const;

    BackbonePicker* m_backbone = nullptr;
    TaskPicker* m_task = nullptr;
    QLabel* m_promptTemplateLabel = nullptr;
    QPlainTextEdit* m_promptTemplate = nullptr; // shown for decoder backbones only
    MethodOptionsEditor* m_method = nullptr;
    MemoryEstimateView* m_estimate = nullptr;
    ComputeDeviceModel* m_devices = nullptr;

    QSpinBox* m_epochs = nullptr;
    QSpinBox* m_maxSteps = nullptr;
    QSpinBox* m_batch = nullptr;
    QSpinBox* m_accumulation = nullptr;
    QLineEdit* m_learningRate = nullptr;
    QSpinBox* m_warmup = nullptr;
    QSpinBox* m_evalEvery = nullptr;
    QSpinBox* m_maxSourceLength = nullptr;
    QSpinBox* m_maxEvalExamples = nullptr;
    QSpinBox* m_threads = nullptr;
    QSpinBox* m_processes = nullptr; // "GPUs per run": training.processes
    QComboBox* m_dtype = nullptr;
    QComboBox* m_device = nullptr;
    QLineEdit* m_seeds = nullptr;
    QLineEdit* m_name = nullptr; // empty: RunSpec::defaultName(), shown as the placeholder
    QLabel* m_problemLabel = nullptr;
    QLabel* m_lengthsLabel = nullptr;
    QLineEdit* m_budget = nullptr;
    QPushButton* m_fit = nullptr;
    QLabel* m_fitLabel = nullptr;
    QString m_lengthsKey; // backbone, task and length limits that m_lengths is for
    std::optional<TrainingLengths> m_lengths;
    QString m_lengthsError;
    quint64 m_lengthsGeneration = 0; // results of older measurements are dropped
    QPushButton* m_run = nullptr;
    QPushButton* m_save = nullptr;
    QPushButton* m_load = nullptr;
    QString m_problem;
    QString m_presetFolder;
    nlohmann::json m_extraTraining
        = nlohmann::json::object(); // fields a preset had that the form does not edit
};

} // namespace ladder::widgets
