#include "MethodOptionsEditor.h"

#include <algorithm>
#include <iterator>

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QStackedWidget>
#include <QStandardItemModel>
#include <QVBoxLayout>

#include "KeepListEditor.h"

namespace ladder::widgets {
namespace {

constexpr int kMaxReduction = 64;
constexpr int kMaxHidden = 4096;
constexpr int kMaxRank = 1024;
constexpr int kMaxPrompts = 1000;
constexpr int kMaxFisherSamples = 100000;
constexpr int kMaxLayers = 128;
constexpr int kMaxSideHeads = 1024;
// T5's projections, then a decoder's (Llama, Mistral, Qwen2); setArchitecture shows one set.
const char* const kLoraTargets[] = { "q", "k", "v", "o", "wi", "wo", "gate", "up", "down" };
bool isDecoderTarget(const std::string& t)
{
    return t == "gate" || t == "up" || t == "down";
}
bool isT5Target(const std::string& t)
{
    return t == "wi" || t == "wo";
}

struct MethodEntry {
    const char* id;
    const char* title;
    const char* description;
};
const MethodEntry kMethods[] = {
    { "ladder", "Ladder Side-Tuning (LST)",
        "A small side network beside the frozen backbone, fed by ladders from its layers; the backbone needs "
        "no "
        "backward pass (paper: r 8, lr 3e-3)." },
    { "full", "Full fine-tuning", "Every backbone weight trains (lr 3e-4)." },
    { "bitfit", "BitFit",
        "Zero-initialised biases on every linear and layer norm; only those train (lr 3e-4)." },
    { "adapter", "Adapters",
        "Houlsby bottlenecks after self-attention and the FFN (paper: hidden 48, lr 3e-4)." },
    { "lora", "LoRA",
        "Low-rank updates of the chosen attention matrices (paper: rank 32 on q and v, lr 3e-4)." },
    { "qlora", "QLoRA (LoRA, int4 base)",
        "LoRA over a frozen backbone stored in 4-bit groups (or int8): the baseline users pick since 2023 "
        "(rank 32 on q and v, lr 3e-4). Shown as its own method in the runs table and the compare plot." },
    { "prompt", "Prompt tuning",
        "Trainable vectors prepended to the encoder input (paper: 100 prompts, lr 0.3)." },
};

// The pages of the stacked widget, in order; qlora shows LoRA's page.
const char* const kPages[] = { "ladder", "full", "bitfit", "adapter", "lora", "prompt" };

QSpinBox* spin(int min, int max, const char* name)
{
    auto* box = new QSpinBox;
    box->setRange(min, max);
    box->setObjectName(QString::fromLatin1(name));
    return box;
}

QDoubleSpinBox* doubleSpin(double min, double max, int decimals, double step, const char* name)
{
    auto* box = new QDoubleSpinBox;
    box->setRange(min, max);
    box->setDecimals(decimals);
    box->setSingleStep(step);
    box->setObjectName(QString::fromLatin1(name));
    return box;
}

QComboBox* combo(const QStringList& items, const char* name)
{
    auto* box = new QComboBox;
    box->addItems(items);
    box->setObjectName(QString::fromLatin1(name));
    return box;
}

} // namespace

MethodOptionsEditor::MethodOptionsEditor(QWidget* parent)
    : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    auto* top = new QFormLayout;
    m_method = new QComboBox;
    m_method->setObjectName(QStringLiteral("methodCombo"));
    for (const auto& m : kMethods)
        m_method->addItem(tr(m.title), QString::fromLatin1(m.id));
    top->addRow(tr("Method"), m_method);
    m_freeze = spin(0, 2 * kMaxLayers, "freezeLayers");
    m_freeze->setToolTip(
        tr("Freeze the first N layers (encoder first, then decoder) and add no modules there"));
    m_freezeLabel = new QLabel(tr("Freeze first N layers"));
    top->addRow(m_freezeLabel, m_freeze);
    auto* storage = new QWidget;
    auto* storageRow = new QHBoxLayout(storage);
    storageRow->setContentsMargins(0, 0, 0, 0);
    m_backboneDtype = new QComboBox;
    m_backboneDtype->setObjectName(QStringLiteral("backboneDtype"));
    m_backboneDtype->addItem(tr("fp32 (as loaded)"), QStringLiteral("fp32"));
    m_backboneDtype->addItem(tr("bf16"), QStringLiteral("bf16"));
    m_backboneDtype->addItem(tr("int8 (per-channel scales)"), QStringLiteral("int8"));
    m_backboneDtype->addItem(tr("int4 (groups)"), QStringLiteral("int4"));
    m_backboneDtype->setToolTip(tr(
        "How the frozen backbone's weights are held in memory: fp32 as loaded; bf16 halves them; int8 "
        "(one scale per output channel) quarters them; int4 packs them in groups along the input dimension "
        "with a bf16 scale and zero per group (about an eighth). Layer norms and the relative-position "
        "biases stay fp32, and so does everything that trains. QLoRA is LoRA over an int4 or int8 "
        "backbone. Not for full fine-tuning, which trains the backbone itself."));
    m_quantGroupSize = new QComboBox;
    m_quantGroupSize->setObjectName(QStringLiteral("quantGroupSize"));
    for (int g : { 32, 64, 128, 256 })
        m_quantGroupSize->addItem(QString::number(g), g);
    m_quantGroupSize->setToolTip(
        tr("int4: weights per quantisation group along the input dimension (ATen's int4 packing: 32, 64, 128 "
           "or 256; 64 by default). Smaller groups follow the weights more closely and hold more scales."));
    storageRow->addWidget(m_backboneDtype, 1);
    storageRow->addWidget(new QLabel(tr("group")));
    storageRow->addWidget(m_quantGroupSize);
    m_backboneDtypeLabel = new QLabel(tr("Backbone storage"));
    top->addRow(m_backboneDtypeLabel, storage);
    layout->addLayout(top);

    m_description = new QLabel;
    m_description->setWordWrap(true);
    m_description->setObjectName(QStringLiteral("methodDescription"));
    layout->addWidget(m_description);

    m_pages = new QStackedWidget;
    m_pages->addWidget(makeLadderPage()); // in the order of kPages
    m_pages->addWidget(makeEmptyPage(tr("Full fine-tuning has no options beyond freezing.")));
    m_pages->addWidget(
        makeEmptyPage(tr("BitFit has no options beyond freezing and the backbone's storage.")));
    m_pages->addWidget(makeAdapterPage());
    m_pages->addWidget(makeLoraPage());
    m_pages->addWidget(makePromptPage());
    layout->addWidget(m_pages);

    connect(
        m_method, qOverload<int>(&QComboBox::currentIndexChanged), this, &MethodOptionsEditor::methodChosen);
    connect(m_backboneDtype, qOverload<int>(&QComboBox::currentIndexChanged), this,
        &MethodOptionsEditor::updateBackboneStorage);
    watch(m_freeze);
    watch(m_backboneDtype);
    watch(m_quantGroupSize);
    setOptions(MethodOptions::defaults("ladder"));
    methodChosen();
}

QWidget* MethodOptionsEditor::makeLadderPage()
{
    auto* page = new QWidget;
    auto* form = new QFormLayout(page);
    form->setContentsMargins(0, 0, 0, 0);
    m_r = spin(1, kMaxReduction, "ladderR");
    m_r->setToolTip(tr("Reduction factor: the side network has d_model/r, d_ff/r and d_kv/r"));
    form->addRow(tr("Reduction factor r"), m_r);
    m_keep = new KeepListEditor;
    m_keep->setObjectName(QStringLiteral("keepList"));
    form->addRow(tr("Side layers kept"), m_keep);
    m_gateTemperature = doubleSpin(0.001, 100.0, 3, 0.05, "gateTemperature");
    form->addRow(tr("Gate temperature T"), m_gateTemperature);
    m_init = combo(
        { QStringLiteral("fisher"), QStringLiteral("magnitude"), QStringLiteral("random") }, "ladderInit");
    m_init->setToolTip(
        tr("Side network initialisation: pruned from the backbone by empirical Fisher information (the "
           "default, as in every LST script of the paper's code; a pass over the Fisher samples before the "
           "first step, shown in the queue) or by weight magnitude, or random"));
    form->addRow(tr("Initialisation"), m_init);
    m_fisherSamples = spin(1, kMaxFisherSamples, "fisherSamples");
    m_fisherSamples->setToolTip(
        tr("Training examples for the empirical Fisher (1024, the paper code's samples_for_fisher)"));
    form->addRow(tr("Fisher samples"), m_fisherSamples);
    m_ablation = combo({ QStringLiteral("none"), QStringLiteral("side-tuning"), QStringLiteral("no-ladders"),
                           QStringLiteral("adapter-blocks"), QStringLiteral("cross-attention") },
        "ladderAblation");
    form->addRow(tr("Ablation"), m_ablation);

    auto* memory = new QLabel(tr("<b>Memory options</b> (beyond the paper; the estimate follows them)"));
    memory->setObjectName(QStringLiteral("ladderMemoryHeading"));
    form->addRow(memory);
    m_sideCheckpoint = new QCheckBox(tr("Recompute side layers in the backward"));
    m_sideCheckpoint->setObjectName(QStringLiteral("sideCheckpoint"));
    m_sideCheckpoint->setToolTip(
        tr("Side checkpoint: keep none of the side layers' activations (ladder downsample, gate, side block) "
           "for the backward and recompute each layer there instead. Saves most of the side network's "
           "activations for about 1/64 of the backbone's compute at r 8; the gradients are the same."));
    form->addRow(tr("Side checkpoint"), m_sideCheckpoint);
    m_sideAttention = combo({ QStringLiteral("math"), QStringLiteral("sdpa") }, "sideAttention");
    m_sideAttention->setToolTip(
        tr("math: softmax(q k^T + position bias) as HF computes it, keeping each attention map for the "
           "backward. sdpa: fused scaled-dot-product attention with the position bias as an additive mask, "
           "keeping no attention map (equal to math to 1e-5)."));
    form->addRow(tr("Side attention"), m_sideAttention);
    m_ladderDtype = combo({ QStringLiteral("fp32"), QStringLiteral("bf16") }, "ladderDtype");
    m_ladderDtype->setToolTip(
        tr("The dtype of the ladder inputs: the frozen backbone's hidden states the side network reads, kept "
           "for its backward. bf16 halves them, rounding each value to bf16."));
    form->addRow(tr("Ladder inputs"), m_ladderDtype);
    m_sideHeads = spin(0, kMaxSideHeads, "sideHeads");
    m_sideHeads->setSpecialValueText(tr("backbone's"));
    m_sideHeads->setToolTip(tr(
        "Attention heads of the side network (backbone's: as many as the backbone). The side's inner width "
        "(heads x d_kv / r) stays and is split into this many heads; fewer heads keep smaller attention "
        "maps. An ablation beyond the paper: it changes the model, so compare its accuracy."));
    form->addRow(tr("Side heads"), m_sideHeads);
    watch(m_r);
    watch(m_gateTemperature);
    watch(m_init);
    watch(m_fisherSamples);
    watch(m_ablation);
    watch(m_sideCheckpoint);
    watch(m_sideAttention);
    watch(m_ladderDtype);
    watch(m_sideHeads);
    connect(m_keep, &KeepListEditor::keepChanged, this, &MethodOptionsEditor::changed);
    connect(m_init, &QComboBox::currentTextChanged, this,
        [this](const QString& init) { m_fisherSamples->setEnabled(init == QLatin1String("fisher")); });
    return page;
}

QWidget* MethodOptionsEditor::makeAdapterPage()
{
    auto* page = new QWidget;
    auto* form = new QFormLayout(page);
    form->setContentsMargins(0, 0, 0, 0);
    m_hidden = spin(1, kMaxHidden, "adapterHidden");
    form->addRow(tr("Hidden size"), m_hidden);
    m_activation = combo(
        { QStringLiteral("relu"), QStringLiteral("gelu"), QStringLiteral("silu"), QStringLiteral("tanh") },
        "adapterActivation");
    form->addRow(tr("Activation"), m_activation);
    watch(m_hidden);
    watch(m_activation);
    return page;
}

QWidget* MethodOptionsEditor::makeLoraPage()
{
    auto* page = new QWidget;
    auto* form = new QFormLayout(page);
    form->setContentsMargins(0, 0, 0, 0);
    m_rank = spin(1, kMaxRank, "loraRank");
    form->addRow(tr("Rank"), m_rank);
    m_alpha = doubleSpin(0.01, 10000.0, 2, 1.0, "loraAlpha");
    form->addRow(tr("Alpha (scale = alpha / rank)"), m_alpha);
    m_dropout = doubleSpin(0.0, 0.99, 2, 0.05, "loraDropout");
    form->addRow(tr("Dropout"), m_dropout);
    auto* targets = new QWidget;
    auto* row = new QHBoxLayout(targets);
    row->setContentsMargins(0, 0, 0, 0);
    for (const char* t : kLoraTargets) {
        auto* box = new QCheckBox(QString::fromLatin1(t));
        box->setObjectName(QStringLiteral("loraTarget_%1").arg(QString::fromLatin1(t)));
        row->addWidget(box);
        m_targets[t] = box;
        watch(box);
    }
    row->addStretch(1);
    form->addRow(tr("Targets"), targets);
    m_loraBitfit = new QCheckBox(tr("Train BitFit biases too (as the paper's reference)"));
    m_loraBitfit->setObjectName(QStringLiteral("loraBitfit"));
    form->addRow(QString(), m_loraBitfit);
    watch(m_rank);
    watch(m_alpha);
    watch(m_dropout);
    watch(m_loraBitfit);
    return page;
}

QWidget* MethodOptionsEditor::makePromptPage()
{
    auto* page = new QWidget;
    auto* form = new QFormLayout(page);
    form->setContentsMargins(0, 0, 0, 0);
    m_prompts = spin(1, kMaxPrompts, "promptCount");
    form->addRow(tr("Prompt vectors"), m_prompts);
    watch(m_prompts);
    return page;
}

QWidget* MethodOptionsEditor::makeEmptyPage(const QString& text)
{
    auto* label = new QLabel(text);
    label->setAlignment(Qt::AlignTop | Qt::AlignLeft);
    return label;
}

void MethodOptionsEditor::watch(QSpinBox* box)
{
    connect(box, qOverload<int>(&QSpinBox::valueChanged), this, &MethodOptionsEditor::changed);
}

void MethodOptionsEditor::watch(QDoubleSpinBox* box)
{
    connect(box, qOverload<double>(&QDoubleSpinBox::valueChanged), this, &MethodOptionsEditor::changed);
}

void MethodOptionsEditor::watch(QComboBox* box)
{
    connect(box, qOverload<int>(&QComboBox::currentIndexChanged), this, &MethodOptionsEditor::changed);
}

void MethodOptionsEditor::watch(QCheckBox* box)
{
    connect(box, &QCheckBox::toggled, this, &MethodOptionsEditor::changed);
}

int MethodOptionsEditor::pageOf(const QString& method) const
{
    const QString page = method == QLatin1String("qlora") ? QStringLiteral("lora") : method;
    for (int i = 0; i < static_cast<int>(std::size(kPages)); ++i)
        if (page == QLatin1String(kPages[i]))
            return i;
    return 0;
}

void MethodOptionsEditor::methodChosen()
{
    const int index = m_method->currentIndex();
    const QString id = method();
    m_pages->setCurrentIndex(pageOf(id));
    m_description->setText(tr(kMethods[index].description));
    const bool baseline = id != QLatin1String("ladder");
    m_freeze->setVisible(baseline);
    m_freezeLabel->setVisible(baseline);
    // Leaving QLoRA leaves its quantised backbone too: every other method starts at fp32.
    if (m_lastMethod == QLatin1String("qlora") && id != m_lastMethod) {
        QSignalBlocker block(m_backboneDtype);
        m_backboneDtype->setCurrentIndex(m_backboneDtype->findData(QStringLiteral("fp32")));
    }
    m_lastMethod = id;
    updateBackboneStorage();
    Q_EMIT changed();
}

void MethodOptionsEditor::updateBackboneStorage()
{
    const QString id = method();
    const bool shown = id != QLatin1String("full");
    m_backboneDtypeLabel->setVisible(shown);
    m_backboneDtype->parentWidget()->setVisible(shown);
    // QLoRA is LoRA over a quantised backbone: fp32 and bf16 are not offered (int4 is its default).
    const bool qlora = id == QLatin1String("qlora");
    if (auto* model = qobject_cast<QStandardItemModel*>(m_backboneDtype->model())) {
        for (int i = 0; i < m_backboneDtype->count(); ++i) {
            const QString dtype = m_backboneDtype->itemData(i).toString();
            const bool unquantised = dtype == QLatin1String("fp32") || dtype == QLatin1String("bf16");
            if (auto* item = model->item(i))
                item->setEnabled(!(qlora && unquantised));
        }
    }
    const QString dtype = m_backboneDtype->currentData().toString();
    if (qlora && dtype != QLatin1String("int4") && dtype != QLatin1String("int8")) {
        QSignalBlocker block(m_backboneDtype);
        m_backboneDtype->setCurrentIndex(m_backboneDtype->findData(QStringLiteral("int4")));
    }
    m_quantGroupSize->setEnabled(m_backboneDtype->currentData().toString() == QLatin1String("int4"));
}

QString MethodOptionsEditor::method() const
{
    return m_method->currentData().toString();
}

MethodOptions MethodOptionsEditor::options() const
{
    const std::string id = method().toStdString();
    MethodOptions o = MethodOptions::defaults(id);
    if (id != "ladder")
        o.freeze = m_freeze->value();
    if (id != "full") {
        o.backboneDtype = m_backboneDtype->currentData().toString().toStdString();
        if (o.backboneDtype == "int4")
            o.quantGroupSize = m_quantGroupSize->currentData().toInt();
    }
    if (id == "ladder") {
        o.r = m_r->value();
        o.keep = m_keep->keep();
        o.gateTemperature = m_gateTemperature->value();
        o.init = m_init->currentText().toStdString();
        o.fisherSamples = m_fisherSamples->value();
        o.ablation = m_ablation->currentText().toStdString();
        o.sideCheckpoint = m_sideCheckpoint->isChecked();
        o.sideAttention = m_sideAttention->currentText().toStdString();
        o.ladderDtype = m_ladderDtype->currentText().toStdString();
        o.sideHeads = m_sideHeads->value();
    } else if (id == "adapter") {
        o.hidden = m_hidden->value();
        o.activation = m_activation->currentText().toStdString();
    } else if (o.isLora()) {
        o.rank = m_rank->value();
        o.alpha = m_alpha->value();
        o.dropout = m_dropout->value();
        o.targets.clear();
        for (const char* t : kLoraTargets)
            if (m_targets.at(t)->isChecked() && targetShown(t))
                o.targets.emplace_back(t);
        o.bitfit = m_loraBitfit->isChecked();
    } else if (id == "prompt") {
        o.prompts = m_prompts->value();
    }
    return o;
}

void MethodOptionsEditor::setOptions(const MethodOptions& o)
{
    const MethodOptions defaults = MethodOptions::defaults(o.method);
    // Every page shows either the given options (its own method) or the defaults.
    const MethodOptions& ladder = o.method == "ladder" ? o : MethodOptions::defaults("ladder");
    m_r->setValue(static_cast<int>(ladder.r));
    m_keep->setKeep(ladder.keep);
    m_gateTemperature->setValue(ladder.gateTemperature);
    m_init->setCurrentText(QString::fromStdString(ladder.init));
    m_fisherSamples->setValue(static_cast<int>(ladder.fisherSamples));
    m_fisherSamples->setEnabled(ladder.init == "fisher");
    m_ablation->setCurrentText(QString::fromStdString(ladder.ablation));
    m_sideCheckpoint->setChecked(ladder.sideCheckpoint);
    m_sideAttention->setCurrentText(QString::fromStdString(ladder.sideAttention));
    m_ladderDtype->setCurrentText(QString::fromStdString(ladder.ladderDtype));
    m_sideHeads->setValue(static_cast<int>(ladder.sideHeads));
    const MethodOptions adapter = o.method == "adapter" ? o : MethodOptions::defaults("adapter");
    m_hidden->setValue(static_cast<int>(adapter.hidden));
    m_activation->setCurrentText(QString::fromStdString(adapter.activation));
    const MethodOptions lora = o.isLora() ? o : MethodOptions::defaults("lora");
    m_rank->setValue(static_cast<int>(lora.rank));
    m_alpha->setValue(lora.alpha);
    m_dropout->setValue(lora.dropout);
    for (const char* t : kLoraTargets)
        m_targets.at(t)->setChecked(
            std::find(lora.targets.begin(), lora.targets.end(), t) != lora.targets.end());
    m_loraBitfit->setChecked(lora.bitfit);
    const MethodOptions prompt = o.method == "prompt" ? o : MethodOptions::defaults("prompt");
    m_prompts->setValue(static_cast<int>(prompt.prompts));
    m_freeze->setValue(static_cast<int>(o.method == "ladder" ? defaults.freeze : o.freeze));
    const int index = m_method->findData(QString::fromStdString(o.method));
    if (index >= 0) {
        QSignalBlocker block(m_method); // methodChosen below, once the storage is set
        m_method->setCurrentIndex(index);
    }
    {
        QSignalBlocker block(m_backboneDtype);
        const int dtype = m_backboneDtype->findData(QString::fromStdString(o.backboneDtype));
        m_backboneDtype->setCurrentIndex(dtype >= 0 ? dtype : 0);
        const int group = m_quantGroupSize->findData(static_cast<int>(o.quantGroupSize));
        m_quantGroupSize->setCurrentIndex(
            group >= 0 ? group : m_quantGroupSize->findData(static_cast<int>(defaults.quantGroupSize)));
    }
    m_lastMethod = method(); // the storage shown is the spec's own, even when leaving qlora
    methodChosen();
}

void MethodOptionsEditor::setLayerCount(int layers)
{
    m_keep->setLayerCount(layers);
}

bool MethodOptionsEditor::targetShown(const std::string& target) const
{
    return m_decoder ? !isT5Target(target) : !isDecoderTarget(target);
}

void MethodOptionsEditor::setArchitecture(bool decoderOnly)
{
    if (decoderOnly == m_decoder && m_architectureSet)
        return;
    m_architectureSet = true;
    m_decoder = decoderOnly;
    for (const char* t : kLoraTargets)
        m_targets.at(t)->setVisible(targetShown(t));
    // LST on a decoder has the paper's side network only (peft/DecoderLadder.h): the T5 ablations and the
    // side-attention/heads/checkpoint options are T5's.
    const QString t5Only = tr("T5 backbones only (LST on a decoder: docs/LST.md)");
    for (QWidget* w :
        std::initializer_list<QWidget*> { m_ablation, m_sideCheckpoint, m_sideAttention, m_sideHeads }) {
        w->setEnabled(!decoderOnly);
        w->setToolTip(decoderOnly ? t5Only : QString());
    }
    if (decoderOnly) {
        m_ablation->setCurrentIndex(0);
        m_sideCheckpoint->setChecked(false);
        m_sideAttention->setCurrentIndex(0);
        m_sideHeads->setValue(0);
    }
    Q_EMIT changed();
}

QString MethodOptionsEditor::problem() const
{
    if (method() == QLatin1String("ladder") && m_keep->layerCount() > 0 && !m_keep->anyKept())
        return tr("method: keep at least one side layer");
    if (method() == QLatin1String("lora") || method() == QLatin1String("qlora")) {
        bool any = false;
        for (const auto& [name, box] : m_targets)
            any = any || (box->isChecked() && targetShown(name));
        if (!any)
            return tr("method: LoRA needs at least one target matrix");
    }
    return {};
}

} // namespace ladder::widgets
