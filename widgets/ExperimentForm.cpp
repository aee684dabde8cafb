#include "ExperimentForm.h"

#include <fstream>

#include <QComboBox>
#include <QCoreApplication>
#include <QDir>
#include <QDoubleValidator>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPointer>
#include <QPushButton>
#include <QSaveFile>
#include <QScrollArea>
#include <QSpinBox>
#include <QThreadPool>
#include <QVBoxLayout>

#include "BackbonePicker.h"
#include "ComputeDeviceModel.h"
#include "MemoryEstimateView.h"
#include "MethodOptionsEditor.h"
#include "TaskPicker.h"
#include "device/Devices.h"
#include "train/MemoryPlan.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder::widgets {
namespace {

constexpr const char* kSource = "experiment form";
constexpr int kMaxEpochs = 1000;
constexpr int kMaxSteps = 10000000;
constexpr int kMaxBatch = 65536;
constexpr int kMaxAccumulation = 1024;
constexpr int kMaxWarmup = 1000000;
constexpr int kMaxLength = 8192;
constexpr int kMaxEvalExamples = 10000000;
constexpr int kMaxThreads = 256;
constexpr int kMaxProcesses = 64;
constexpr int kMaxSeedCount = 1000;
// Target length the memory estimate assumes until the task's own is measured (class labels are a few
// tokens; the paper's memory tables use 4).
constexpr std::int64_t kEstimateTargetLength = 4;

// Training fields the form edits; the others are carried over from a loaded spec unchanged.
const char* const kEditedTraining[]
    = { "learning_rate", "epochs", "max_steps", "batch_size", "gradient_accumulation", "warmup_steps",
          "eval_every_steps", "max_source_length", "max_eval_examples", "threads", "dtype", "processes" };

QSpinBox* spin(int min, int max, const char* name, const QString& tip = {})
{
    auto* box = new QSpinBox;
    box->setRange(min, max);
    box->setObjectName(QString::fromLatin1(name));
    box->setToolTip(tip);
    return box;
}

} // namespace

ExperimentForm::ExperimentForm(QWidget* parent)
    : QWidget(parent)
{
    auto* outer = new QVBoxLayout(this);
    auto* scroll = new QScrollArea;
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    auto* content = new QWidget;
    auto* columns = new QHBoxLayout(content);

    auto* left = new QVBoxLayout;
    auto* backboneGroup = new QGroupBox(tr("Backbone"));
    auto* backboneLayout = new QVBoxLayout(backboneGroup);
    m_backbone = new BackbonePicker;
    backboneLayout->addWidget(m_backbone);
    left->addWidget(backboneGroup);

    auto* taskGroup = new QGroupBox(tr("Task"));
    auto* taskLayout = new QVBoxLayout(taskGroup);
    m_task = new TaskPicker;
    taskLayout->addWidget(m_task);
    // A decoder-only backbone reads prompts (data/PromptTemplate.h): its template, empty for the task's own.
    m_promptTemplateLabel
        = new QLabel(tr("Prompt template (decoder backbones; {field} placeholders, empty for "
                        "the task's built-in one)"));
    m_promptTemplateLabel->setWordWrap(true);
    m_promptTemplate = new QPlainTextEdit;
    m_promptTemplate->setObjectName(QStringLiteral("promptTemplate"));
    m_promptTemplate->setTabChangesFocus(true);
    m_promptTemplate->setFixedHeight(m_promptTemplate->fontMetrics().lineSpacing() * 4 + 10);
    taskLayout->addWidget(m_promptTemplateLabel);
    taskLayout->addWidget(m_promptTemplate);
    left->addWidget(taskGroup);

    auto* methodGroup = new QGroupBox(tr("Method"));
    auto* methodLayout = new QVBoxLayout(methodGroup);
    m_method = new MethodOptionsEditor;
    methodLayout->addWidget(m_method);
    left->addWidget(methodGroup);
    left->addStretch(1);

    auto* right = new QVBoxLayout;
    right->addWidget(makeTrainingGroup());
    auto* estimateGroup = new QGroupBox(tr("Memory estimate"));
    auto* estimateLayout = new QVBoxLayout(estimateGroup);
    m_estimate = new MemoryEstimateView;
    estimateLayout->addWidget(m_estimate);
    m_lengthsLabel = new QLabel;
    m_lengthsLabel->setObjectName(QStringLiteral("estimateLengthsLabel"));
    m_lengthsLabel->setWordWrap(true);
    estimateLayout->addWidget(m_lengthsLabel);
    auto* fitRow = new QHBoxLayout;
    m_budget = new QLineEdit;
    m_budget->setObjectName(QStringLiteral("fitBudgetEdit"));
    m_budget->setPlaceholderText(tr("device's free memory"));
    m_budget->setToolTip(
        tr("Memory budget for Fit to device: 24GiB, 800MiB, 24GB or bytes. Empty: the chosen "
           "device's free memory (for the CPU, the RAM available now)."));
    m_fit = new QPushButton(tr("Fit to device"));
    m_fit->setObjectName(QStringLiteral("fitToDeviceButton"));
    m_fit->setToolTip(
        tr("Set the batch size to the largest whose estimated peak fits the budget (as `ladder plan`). When "
           "even batch 1 does not fit, change the memory options instead: the fewest changes that fit (side "
           "checkpoint and SDPA attention first, which train the same), then the largest batch with them."));
    fitRow->addWidget(new QLabel(tr("Budget")));
    fitRow->addWidget(m_budget, 1);
    fitRow->addWidget(m_fit);
    estimateLayout->addLayout(fitRow);
    m_fitLabel = new QLabel;
    m_fitLabel->setObjectName(QStringLiteral("fitToDeviceLabel"));
    m_fitLabel->setWordWrap(true);
    estimateLayout->addWidget(m_fitLabel);
    right->addWidget(estimateGroup);
    right->addStretch(1);
    columns->addLayout(left, 3);
    columns->addLayout(right, 2);
    scroll->setWidget(content);
    outer->addWidget(scroll, 1);

    m_problemLabel = new QLabel;
    m_problemLabel->setObjectName(QStringLiteral("formProblemLabel"));
    m_problemLabel->setWordWrap(true);
    m_problemLabel->setStyleSheet(QStringLiteral("color: #b00020;"));
    outer->addWidget(m_problemLabel);

    auto* buttons = new QHBoxLayout;
    m_load = new QPushButton(tr("Load preset…"));
    m_load->setObjectName(QStringLiteral("loadPresetButton"));
    m_save = new QPushButton(tr("Save preset…"));
    m_save->setObjectName(QStringLiteral("savePresetButton"));
    m_run = new QPushButton(tr("Run"));
    m_run->setObjectName(QStringLiteral("runButton"));
    m_run->setToolTip(tr("Queue one run per seed (Ctrl+Enter)"));
    m_run->setDefault(true);
    buttons->addWidget(m_load);
    buttons->addWidget(m_save);
    buttons->addStretch(1);
    buttons->addWidget(m_run);
    outer->addLayout(buttons);

    connect(m_run, &QPushButton::clicked, this, [this] {
        revalidate();
        if (isValid())
            Q_EMIT runRequested();
    });
    connect(m_fit, &QPushButton::clicked, this, &ExperimentForm::fitToDevice);
    connect(m_budget, &QLineEdit::returnPressed, this, &ExperimentForm::fitToDevice);
    connect(m_save, &QPushButton::clicked, this, &ExperimentForm::savePresetWithDialog);
    connect(m_load, &QPushButton::clicked, this, &ExperimentForm::loadPresetWithDialog);
    connect(m_backbone, &BackbonePicker::backboneChanged, this, &ExperimentForm::backboneChanged);
    connect(m_backbone, &BackbonePicker::problem, this, &ExperimentForm::problemReported);
    connect(m_task, &TaskPicker::changed, this, &ExperimentForm::revalidate);
    connect(m_promptTemplate, &QPlainTextEdit::textChanged, this, &ExperimentForm::revalidate);
    connect(m_method, &MethodOptionsEditor::changed, this, &ExperimentForm::revalidate);

    fillDevices();
    backboneChanged();
    setSpecJson(firstLaunchSpec());
}

QWidget* ExperimentForm::makeTrainingGroup()
{
    auto* group = new QGroupBox(tr("Training"));
    auto* form = new QFormLayout(group);
    m_name = new QLineEdit;
    m_name->setObjectName(QStringLiteral("runNameEdit"));
    m_name->setClearButtonEnabled(true);
    m_name->setToolTip(tr("The run's name in the queue, the runs table and the plot. Empty: a name made from "
                          "the method and its knobs (shown greyed). With several seeds each run's name ends "
                          "in its seed."));
    form->addRow(tr("Name"), m_name);
    m_epochs = spin(1, kMaxEpochs, "epochsSpin");
    form->addRow(tr("Epochs"), m_epochs);
    m_maxSteps
        = spin(0, kMaxSteps, "maxStepsSpin", tr("Stop after this many optimizer steps (0: run the epochs)"));
    m_maxSteps->setSpecialValueText(tr("no limit"));
    form->addRow(tr("Max steps"), m_maxSteps);
    m_batch = spin(1, kMaxBatch, "batchSpin");
    form->addRow(tr("Batch size"), m_batch);
    m_accumulation = spin(1, kMaxAccumulation, "accumulationSpin");
    form->addRow(tr("Gradient accumulation"), m_accumulation);
    m_learningRate = new QLineEdit;
    m_learningRate->setObjectName(QStringLiteral("learningRateEdit"));
    m_learningRate->setPlaceholderText(tr("method default"));
    auto* validator = new QDoubleValidator(0.0, 100.0, 12, m_learningRate);
    validator->setNotation(QDoubleValidator::ScientificNotation);
    validator->setLocale(QLocale::c());
    m_learningRate->setValidator(validator);
    form->addRow(tr("Learning rate"), m_learningRate);
    m_warmup = spin(0, kMaxWarmup, "warmupSpin");
    form->addRow(tr("Warm-up steps"), m_warmup);
    m_evalEvery = spin(0, kMaxSteps, "evalEverySpin", tr("Evaluate every N steps (0: once per epoch)"));
    m_evalEvery->setSpecialValueText(tr("every epoch"));
    form->addRow(tr("Evaluate every"), m_evalEvery);
    m_maxSourceLength = spin(2, kMaxLength, "maxSourceLengthSpin");
    form->addRow(tr("Max source length"), m_maxSourceLength);
    m_maxEvalExamples = spin(0, kMaxEvalExamples, "maxEvalExamplesSpin");
    m_maxEvalExamples->setSpecialValueText(tr("all"));
    form->addRow(tr("Evaluation examples"), m_maxEvalExamples);
    m_threads = spin(0, kMaxThreads, "threadsSpin", tr("CPU threads of this run (0: LibTorch's default)"));
    m_threads->setSpecialValueText(tr("default"));
    form->addRow(tr("CPU threads"), m_threads);
    m_processes = spin(1, kMaxProcesses, "processesSpin",
        tr("Data parallel: the run trains in this many processes, one GPU each on CUDA (cuda:0 to N-1), "
           "started by the run's worker as `ladder train --nproc N` would; Batch size is the global batch "
           "they share"));
    form->addRow(tr("GPUs per run"), m_processes);
    m_dtype = new QComboBox;
    m_dtype->setObjectName(QStringLiteral("dtypeCombo"));
    m_dtype->addItems({ QStringLiteral("fp32"), QStringLiteral("bf16") });
    form->addRow(tr("Compute dtype"), m_dtype);
    m_device = new QComboBox;
    m_device->setObjectName(QStringLiteral("deviceCombo"));
    form->addRow(tr("Device"), m_device);
    m_seeds = new QLineEdit(QStringLiteral("0"));
    m_seeds->setObjectName(QStringLiteral("seedsEdit"));
    m_seeds->setToolTip(tr("One run per seed: \"0\", \"0, 1, 2\" or \"0-2\""));
    form->addRow(tr("Seeds"), m_seeds);

    for (QSpinBox* box : { m_epochs, m_maxSteps, m_batch, m_accumulation, m_warmup, m_evalEvery,
             m_maxSourceLength, m_maxEvalExamples, m_threads, m_processes })
        connect(box, qOverload<int>(&QSpinBox::valueChanged), this, &ExperimentForm::revalidate);
    for (QLineEdit* edit : { m_learningRate, m_seeds, m_name })
        connect(edit, &QLineEdit::textChanged, this, &ExperimentForm::revalidate);
    for (QComboBox* box : { m_dtype, m_device })
        connect(box, qOverload<int>(&QComboBox::currentIndexChanged), this, &ExperimentForm::revalidate);
    return group;
}

void ExperimentForm::setDeviceModel(ComputeDeviceModel* model)
{
    if (m_devices)
        disconnect(m_devices, nullptr, this, nullptr);
    m_devices = model;
    if (m_devices)
        connect(m_devices, &QAbstractItemModel::modelReset, this, &ExperimentForm::fillDevices);
    fillDevices();
}

void ExperimentForm::fillDevices()
{
    const QString current = m_device->currentData().toString();
    QSignalBlocker block(m_device);
    m_device->clear();
    bool hasCpu = false;
    if (m_devices) {
        for (const auto& d : m_devices->devices()) {
            const QString id = QString::fromStdString(d.id);
            const QString memory = d.id == "cpu"
                ? tr("%1 RAM").arg(ComputeDeviceModel::formatGiB(d.totalBytes))
                : tr("%1 free of %2")
                      .arg(ComputeDeviceModel::formatGiB(d.freeBytes),
                          ComputeDeviceModel::formatGiB(d.totalBytes));
            m_device->addItem(
                QStringLiteral("%1 · %2 · %3").arg(id, QString::fromStdString(d.name), memory), id);
            hasCpu = hasCpu || d.id == "cpu";
        }
    }
    if (!hasCpu)
        m_device->insertItem(0, tr("cpu"), QStringLiteral("cpu"));
    const int index = m_device->findData(current);
    m_device->setCurrentIndex(index < 0 ? 0 : index);
}

void ExperimentForm::backboneChanged()
{
    const auto& info = m_backbone->info();
    if (info.hasConfig()) {
        m_method->setLayerCount(info.keepableLayers());
        m_method->setArchitecture(info.llama.has_value());
    }
    m_promptTemplateLabel->setVisible(info.llama.has_value());
    m_promptTemplate->setVisible(info.llama.has_value());
    revalidate();
}

nlohmann::json ExperimentForm::specJsonForSeed(std::uint64_t seed) const
{
    nlohmann::json training = m_extraTraining;
    bool lrOk = false;
    const double lr = QLocale::c().toDouble(m_learningRate->text().trimmed(), &lrOk);
    if (lrOk && lr > 0.0)
        training["learning_rate"] = lr;
    training["epochs"] = m_epochs->value();
    training["max_steps"] = m_maxSteps->value();
    training["batch_size"] = m_batch->value();
    training["gradient_accumulation"] = m_accumulation->value();
    training["warmup_steps"] = m_warmup->value();
    training["eval_every_steps"] = m_evalEvery->value();
    training["max_source_length"] = m_maxSourceLength->value();
    training["max_eval_examples"] = m_maxEvalExamples->value();
    training["threads"] = m_threads->value();
    training["processes"] = m_processes->value(); // 1 is not written into the stored spec (RunSpec::toJson)
    training["dtype"] = m_dtype->currentText().toStdString();
    const QString device = m_device->currentData().toString();
    nlohmann::json task = m_task->taskJson();
    if (m_backbone->info().llama && !m_promptTemplate->toPlainText().isEmpty())
        task["prompt_template"] = m_promptTemplate->toPlainText().toStdString();
    nlohmann::json spec { { "backbone", m_backbone->backbone().toStdString() }, { "task", task },
        { "method", m_method->options().toJson() }, { "training", training },
        { "device", device.isEmpty() ? std::string("cpu") : device.toStdString() }, { "seed", seed } };
    if (const QString name = m_name->text().simplified(); !name.isEmpty()) {
        std::vector<std::uint64_t> seeds;
        const bool several = parseSeeds(m_seeds->text(), &seeds) && seeds.size() > 1;
        spec["name"]
            = several ? QStringLiteral("%1 · seed %2").arg(name).arg(seed).toStdString() : name.toStdString();
    }
    return spec;
}

nlohmann::json ExperimentForm::specJson() const
{
    std::vector<std::uint64_t> seeds;
    if (!parseSeeds(m_seeds->text(), &seeds) || seeds.empty())
        seeds = { 0 };
    return specJsonForSeed(seeds.front());
}

bool ExperimentForm::specs(std::vector<RunSpec>* out, QString* error) const
{
    auto fail = [&](const QString& message) {
        if (error)
            *error = message;
        return false;
    };
    if (const QString p = m_backbone->info().error; !p.isEmpty())
        return fail(tr("backbone: %1").arg(p));
    if (const QString p = m_task->problem(); !p.isEmpty())
        return fail(p);
    if (const QString p = m_method->problem(); !p.isEmpty())
        return fail(p);
    if (!m_learningRate->text().trimmed().isEmpty() && !m_learningRate->hasAcceptableInput())
        return fail(
            tr("training: learning rate: expected a number such as 3e-3, or empty for the method's default"));
    std::vector<std::uint64_t> seeds;
    QString seedError;
    if (!parseSeeds(m_seeds->text(), &seeds, &seedError))
        return fail(seedError);
    std::vector<RunSpec> result;
    try {
        for (auto seed : seeds) {
            auto spec = RunSpec::fromJson(specJsonForSeed(seed), kSource);
            if (m_backbone->info().hasConfig())
                spec.method.validate(m_backbone->info().shape);
            result.push_back(std::move(spec));
        }
    } catch (const std::exception& e) {
        return fail(QString::fromUtf8(e.what()));
    }
    if (out)
        *out = std::move(result);
    return true;
}

QString ExperimentForm::computeProblem() const
{
    QString error;
    return specs(nullptr, &error) ? QString() : error;
}

MemoryEstimateInput ExperimentForm::formEstimateInput(
    const std::optional<RunSpec>& spec, const BackboneInfo& info) const
{
    MemoryEstimateInput input;
    if (spec && m_lengths) {
        // As estimateRunSpec and the trainer: a decoder's step runs on the joined prompt and target.
        input = info.llama ? estimateInputFor(*spec, *info.llama, *m_lengths)
                           : estimateInputFor(*spec, *info.config, *m_lengths);
    } else {
        const std::int64_t target = m_extraTraining.value("max_target_length", std::int64_t(0));
        // A rank's share of the global batch, as estimateInputFor takes it.
        input.batch = (m_batch->value() + m_processes->value() - 1) / m_processes->value();
        input.srcLen = m_maxSourceLength->value();
        input.tgtLen = target > 0 ? target : kEstimateTargetLength;
        input.dtype = m_dtype->currentText().toStdString();
        input.gradientAccumulation = m_accumulation->value();
        const QString device = m_device->currentData().toString();
        input.device = device.isEmpty() ? std::string("cpu") : device.toStdString();
    }
    if (info.llama)
        input.llama = info.llama;
    else
        input.config = *info.config; // the picker's config (its dropout), whatever the spec holds
    input.method = m_method->options();
    return input;
}

QString ExperimentForm::vlNoEstimateMessage()
{
    return tr(
        "No estimate for vision-and-language runs yet: the estimate does not price the visual features. "
        "The run's peak memory is measured and stored as for any run.");
}

std::optional<MemoryEstimateInput> ExperimentForm::estimateInput() const
{
    const auto& info = m_backbone->info();
    if (!info.hasConfig() || m_task->isVl())
        return std::nullopt;
    std::optional<RunSpec> spec;
    try {
        spec = RunSpec::fromJson(specJsonForSeed(0), "form");
    } catch (const std::exception&) {
        // an invalid form shows its problem; the estimate keeps to the widgets' values
    }
    return formEstimateInput(spec, info);
}

void ExperimentForm::updateEstimate()
{
    const auto& info = m_backbone->info();
    if (m_task->isVl()) {
        // RunEstimate does not price a VL run (its visual tokens, the feature projection): say so rather than
        // show a text-only figure. Nothing is measured for it either.
        m_estimate->clear(vlNoEstimateMessage());
        m_lengthsLabel->clear();
        return;
    }
    if (!info.hasConfig()) {
        m_estimate->clear(tr("No estimate: the backbone's config.json could not be read."));
        return;
    }
    // The estimate prices the run's longest training batch: the task's longest tokenised source (cut at
    // max_source_length) and target, as the trainer pads its batches (RunEstimate.h). Until they are
    // measured it assumes max_source_length and a short label.
    std::optional<RunSpec> spec;
    try {
        spec = RunSpec::fromJson(specJsonForSeed(0), "form");
    } catch (const std::exception&) {
        // an invalid form shows its problem; the estimate keeps to the widgets' values
    }
    const std::int64_t target = m_extraTraining.value("max_target_length", std::int64_t(0));
    if (spec && m_task->problem().isEmpty()) {
        // The spec's task, which carries a decoder's prompt template (the prompts are what is measured).
        const auto key = m_backbone->info().folder + QLatin1Char('\n')
            + QString::fromStdString(spec->toJson().at("task").dump()) + QLatin1Char('\n')
            + QString::number(m_maxSourceLength->value()) + QLatin1Char(' ') + QString::number(target);
        measureLengths(*spec, key);
    }
    const MemoryEstimateInput input = formEstimateInput(spec, info);
    if (spec && m_lengths) {
        m_lengthsLabel->setText(tr("For the longest training batch: source %1 tokens, target %2 (the longest "
                                   "of %3 training examples%4). Evaluation's peak is stored apart.")
                                    .arg(m_lengths->source)
                                    .arg(m_lengths->target)
                                    .arg(m_lengths->examples)
                                    .arg(m_lengths->truncatedSources ? tr("; %1 sources cut at %2")
                                                                           .arg(m_lengths->truncatedSources)
                                                                           .arg(m_maxSourceLength->value())
                                                                     : QString()));
    } else {
        m_lengthsLabel->setText(!m_lengthsError.isEmpty()
                ? tr("Assumes source %1 and target %2 tokens: the task's lengths could not be measured (%3).")
                      .arg(input.srcLen)
                      .arg(input.tgtLen)
                      .arg(m_lengthsError)
                : tr("Assumes source %1 and target %2 tokens while the task's lengths are measured...")
                      .arg(input.srcLen)
                      .arg(input.tgtLen));
    }
    const QString device = m_device->currentData().toString();
    std::uint64_t capacity = 0;
    QString capacityName;
    if (m_devices) {
        for (const auto& d : m_devices->devices()) {
            if (QString::fromStdString(d.id) != device)
                continue;
            const bool cpu = d.id == "cpu";
            capacity = cpu ? d.totalBytes : d.freeBytes;
            capacityName = cpu ? tr("%1 RAM").arg(ComputeDeviceModel::formatGiB(capacity))
                               : tr("%1 free on %2").arg(ComputeDeviceModel::formatGiB(capacity), device);
        }
    }
    m_estimate->update(input, capacity, capacityName);
}

std::uint64_t ExperimentForm::fitBudget(QString* name, QString* error) const
{
    const QString text = m_budget->text().trimmed();
    if (!text.isEmpty()) {
        try {
            const auto bytes = parseByteSize(text.toStdString(), "budget");
            *name = tr("the budget of %1").arg(QString::fromStdString(formatBinaryBytes(bytes)));
            return bytes;
        } catch (const std::exception& e) {
            *error = QString::fromUtf8(e.what());
            return 0;
        }
    }
    QString device = m_device->currentData().toString();
    if (device.isEmpty())
        device = QStringLiteral("cpu");
    std::optional<ComputeDevice> found;
    if (m_devices)
        for (const auto& d : m_devices->devices())
            if (QString::fromStdString(d.id) == device)
                found = d;
    if (!found && device == QLatin1String("cpu"))
        found = cpuDevice(); // one read of /proc/meminfo
    if (!found || found->freeBytes == 0) {
        *error = tr("the free memory of %1 is not known (the device list may still be read): type a budget "
                    "such as 24GiB")
                     .arg(device);
        return 0;
    }
    const QString amount = QString::fromStdString(formatBinaryBytes(found->freeBytes));
    *name = found->id == "cpu" ? tr("%1 of RAM available").arg(amount)
                               : tr("%1 free on %2").arg(amount, device);
    return found->freeBytes;
}

void ExperimentForm::fitToDevice()
{
    auto say = [this](const QString& text, bool ok) {
        m_fitLabel->setStyleSheet(ok ? QString() : QStringLiteral("color: #b00020;"));
        m_fitLabel->setText(text);
    };
    if (m_task->isVl()) {
        say(tr("Fit to device: %1").arg(vlNoEstimateMessage()), false);
        return;
    }
    const auto input = estimateInput();
    if (!input) {
        say(tr("Fit to device: no estimate without the backbone's config.json."), false);
        return;
    }
    QString name, error;
    const auto budget = fitBudget(&name, &error);
    if (budget == 0) {
        say(tr("Fit to device: %1").arg(error), false);
        return;
    }
    DeviceFit fit;
    try {
        fit = fitToBudget(*input, budget, kMaxBatch);
    } catch (const std::exception& e) {
        say(tr("Fit to device: %1").arg(QString::fromUtf8(e.what())), false);
        return;
    }
    if (!fit.ok) {
        say(tr("Fit to %1: %2").arg(name, QString::fromStdString(fit.message)), false);
        return;
    }
    if (fit.optionsChanged)
        m_method->setOptions(fit.options);
    // The fitted batch is a rank's; the spec's batch is the global one that the ranks share.
    const int ranks = m_processes->value();
    m_batch->setValue(static_cast<int>(std::min<std::int64_t>(fit.batch * ranks, kMaxBatch)));
    say(tr("Fit to %1: %2%3%4")
            .arg(name, QString::fromStdString(fit.message),
                ranks > 1 ? tr(" per rank: a global batch of %1 over %2 processes")
                                .arg(fit.batch * ranks)
                                .arg(ranks)
                          : QString(),
                m_accumulation->value() > 1
                    ? tr(" (a micro-batch: gradient accumulation %1 makes each step %2 examples)")
                          .arg(m_accumulation->value())
                          .arg(fit.batch * m_accumulation->value())
                    : QString()),
        true);
}

void ExperimentForm::measureLengths(const RunSpec& spec, const QString& key)
{
    if (key == m_lengthsKey)
        return;
    m_lengthsKey = key;
    m_lengths.reset();
    m_lengthsError.clear();
    const auto generation = ++m_lengthsGeneration;
    const auto folder = m_backbone->info().folder.toStdString();
    const bool causal = m_backbone->info().llama.has_value();
    QPointer<ExperimentForm> self(this);
    // The global pool: its threads are joined when the application exits, and a result for a form that is
    // gone, or for a key that changed meanwhile, is dropped.
    QThreadPool::globalInstance()->start([self, spec, folder, causal, generation] {
        std::optional<TrainingLengths> lengths;
        QString error;
        try {
            lengths = trainingLengthsFor(spec, folder, causal); // a decoder's over its prompts
        } catch (const std::exception& e) {
            error = QString::fromUtf8(e.what());
        }
        QMetaObject::invokeMethod(
            QCoreApplication::instance(),
            [self, generation, lengths, error] {
                if (!self || self->m_lengthsGeneration != generation)
                    return;
                self->m_lengths = lengths;
                self->m_lengthsError = error;
                self->updateEstimate();
            },
            Qt::QueuedConnection);
    });
}

void ExperimentForm::revalidate()
{
    updateNamePlaceholder();
    updateEstimate();
    m_problem = computeProblem();
    m_problemLabel->setText(m_problem);
    m_run->setEnabled(m_problem.isEmpty());
    Q_EMIT specChanged();
}

void ExperimentForm::updateNamePlaceholder()
{
    QString placeholder;
    try {
        nlohmann::json json = specJson();
        json.erase("name");
        const auto spec = RunSpec::fromJson(json, kSource);
        placeholder = QString::fromStdString(spec.defaultName(m_backbone->info().keepableLayers()));
    } catch (const std::exception&) {
        placeholder = tr("a name from the method and its knobs");
    }
    m_name->setPlaceholderText(placeholder);
}

QString ExperimentForm::defaultRunName() const
{
    return m_name->placeholderText();
}

bool ExperimentForm::setSpecJson(const nlohmann::json& json, QString* error)
{
    RunSpec spec;
    try {
        spec = RunSpec::fromJson(json, kSource);
    } catch (const std::exception& e) {
        if (error)
            *error = QString::fromUtf8(e.what());
        return false;
    }
    QString backboneError;
    if (!m_backbone->setBackbone(QString::fromStdString(spec.backbone), &backboneError)) {
        if (error)
            *error = tr("backbone: %1").arg(backboneError);
        return false;
    }
    m_task->setTaskJson(json.at("task"));
    m_promptTemplate->setPlainText(
        QString::fromStdString(json.at("task").value("prompt_template", std::string())));
    m_method->setOptions(spec.method);
    const auto& o = spec.training;
    const nlohmann::json training = json.value("training", nlohmann::json::object());
    m_extraTraining = nlohmann::json::object();
    for (const auto& [key, value] : training.items()) {
        bool edited = false;
        for (const char* k : kEditedTraining)
            edited = edited || key == k;
        if (!edited)
            m_extraTraining[key] = value;
    }
    // Only an explicit learning rate is shown; 0 or absent means the method's default.
    m_learningRate->setText(training.contains("learning_rate") && o.learningRate > 0.0
            ? QLocale::c().toString(o.learningRate, 'g', 6)
            : QString());
    m_epochs->setValue(static_cast<int>(o.epochs));
    m_maxSteps->setValue(static_cast<int>(o.maxSteps));
    m_batch->setValue(static_cast<int>(o.batchSize));
    m_accumulation->setValue(static_cast<int>(o.gradientAccumulation));
    m_warmup->setValue(static_cast<int>(o.warmupSteps));
    m_evalEvery->setValue(static_cast<int>(o.evalEverySteps));
    m_maxSourceLength->setValue(static_cast<int>(o.maxSourceLength));
    m_maxEvalExamples->setValue(static_cast<int>(o.maxEvalExamples));
    m_threads->setValue(static_cast<int>(o.threads));
    m_processes->setValue(static_cast<int>(o.processes));
    m_dtype->setCurrentText(QString::fromStdString(o.dtype));
    const QString device
        = QString::fromStdString(spec.device == "cuda" ? std::string("cuda:0") : spec.device);
    int index = m_device->findData(device);
    if (index < 0) { // a device this machine does not have: keep it, marked
        m_device->addItem(tr("%1 (not found on this machine)").arg(device), device);
        index = m_device->count() - 1;
    }
    m_device->setCurrentIndex(index);
    m_seeds->setText(QString::number(spec.seed));
    m_name->setText(QString::fromStdString(spec.name));
    revalidate();
    return true;
}

bool ExperimentForm::savePreset(const QString& path, QString* error) const
{
    QSaveFile file(path);
    const std::string text = specJson().dump(2) + "\n";
    if (!file.open(QIODevice::WriteOnly) || file.write(text.data(), static_cast<qint64>(text.size())) < 0
        || !file.commit()) {
        if (error)
            *error = tr("%1: cannot write the preset (%2)").arg(path, file.errorString());
        return false;
    }
    return true;
}

bool ExperimentForm::loadPreset(const QString& path, QString* error)
{
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) {
        if (error)
            *error = tr("%1: cannot open (%2)").arg(path, file.errorString());
        return false;
    }
    nlohmann::json json;
    try {
        json = parseJson(file.readAll().toStdString(), path.toStdString());
    } catch (const std::exception& e) {
        if (error)
            *error = QString::fromUtf8(e.what());
        return false;
    }
    QString inner;
    if (!setSpecJson(json, &inner)) {
        // RunSpec names the "experiment form" source; the user wants the file.
        if (error)
            *error = tr("%1: %2").arg(path, QString::fromStdString(oneLine(inner.toStdString())));
        return false;
    }
    return true;
}

void ExperimentForm::savePresetWithDialog()
{
    const QString path = QFileDialog::getSaveFileName(
        this, tr("Save preset"), m_presetFolder, tr("Run specs (*.json);;All files (*)"));
    if (path.isEmpty())
        return;
    QString error;
    if (!savePreset(path, &error))
        Q_EMIT problemReported(error);
    m_presetFolder = QFileInfo(path).absolutePath();
    Q_EMIT presetFolderChosen(m_presetFolder);
}

void ExperimentForm::loadPresetWithDialog()
{
    const QString path = QFileDialog::getOpenFileName(
        this, tr("Load preset"), m_presetFolder, tr("Run specs (*.json);;All files (*)"));
    if (path.isEmpty())
        return;
    QString error;
    if (!loadPreset(path, &error))
        Q_EMIT problemReported(error);
    m_presetFolder = QFileInfo(path).absolutePath();
    Q_EMIT presetFolderChosen(m_presetFolder);
}

nlohmann::json ExperimentForm::firstLaunchSpec()
{
    // The demo backbone (d_model 256, 4+4 layers) at batch 32 takes about a second a step on two cores:
    // 300 steps with three evaluations on 200 examples are a few minutes, after the Fisher initialisation
    // (the paper's LST: 1024 examples, one backbone backward each).
    return { { "backbone", "demo" }, { "task", { { "type", "demo" }, { "name", "supersense" } } },
        { "method",
            { { "method", "ladder" }, { "r", 8 }, { "init", "fisher" }, { "fisher_samples", 1024 } } },
        { "training",
            { { "epochs", 1 }, { "max_steps", 300 }, { "batch_size", 32 }, { "warmup_steps", 30 },
                { "eval_every_steps", 100 }, { "max_source_length", 64 }, { "max_eval_examples", 200 } } },
        { "device", "cpu" }, { "seed", 0 } };
}

bool ExperimentForm::parseSeeds(const QString& text, std::vector<std::uint64_t>* seeds, QString* error)
{
    std::vector<std::uint64_t> out;
    auto fail = [&] {
        if (error)
            *error = tr("seeds: expected integers >= 0 such as \"0\", \"0, 1, 2\" or \"0-2\", got \"%1\"")
                         .arg(text);
        return false;
    };
    const auto parts = text.split(QLatin1Char(','), Qt::SkipEmptyParts);
    if (parts.isEmpty())
        return fail();
    for (const QString& raw : parts) {
        const QString part = raw.trimmed();
        bool ok1 = false, ok2 = false;
        const int dash = static_cast<int>(part.indexOf(QLatin1Char('-'), 1));
        if (dash > 0) {
            const qulonglong a = part.left(dash).trimmed().toULongLong(&ok1);
            const qulonglong b = part.mid(dash + 1).trimmed().toULongLong(&ok2);
            if (!ok1 || !ok2 || b < a || b - a >= static_cast<qulonglong>(kMaxSeedCount))
                return fail();
            for (qulonglong s = a; s <= b; ++s)
                out.push_back(s);
        } else {
            const qulonglong s = part.toULongLong(&ok1);
            if (!ok1)
                return fail();
            out.push_back(s);
        }
    }
    if (out.size() > static_cast<std::size_t>(kMaxSeedCount))
        return fail();
    if (seeds)
        *seeds = std::move(out);
    return true;
}

} // namespace ladder::widgets
