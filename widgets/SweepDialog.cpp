#include "SweepDialog.h"

#include <QCheckBox>
#include <QDialogButtonBox>
#include <QFileInfo>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QTreeWidget>
#include <QVBoxLayout>

#include "RunsTableModel.h"
#include "SlurmExportDialog.h"
#include "train/DemoPaths.h"

namespace ladder::widgets {
namespace {

QString text(const std::string& s)
{
    return QString::fromStdString(s);
}

// The options that tell the specs apart ("r=8 keep=1,3", "hidden=12 freeze=6"), as the runs table shows them.
QString methodSummary(const nlohmann::json& method)
{
    RunRecord run;
    run.method = method.value("method", std::string());
    run.methodOptionsJson = method.dump();
    return RunsTableModel::optionsSummary(run);
}

} // namespace

SweepDialog::SweepDialog(const nlohmann::json& baseSpec, QWidget* parent)
    : QDialog(parent)
    , m_base(baseSpec)
    , m_baseLabel(new QLabel(this))
    , m_seeds(new QLineEdit(QStringLiteral("0"), this))
    , m_baselines(
          new QCheckBox(tr("Figure 6: also Adapters, LoRA and BitFit freezing their first N layers"), this))
    , m_list(new QTreeWidget(this))
    , m_note(new QLabel(this))
    , m_buttons(new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this))
{
    setWindowTitle(tr("Sweeps"));
    try {
        RunSpec::fromJson(m_base, "base run spec");
    } catch (const std::exception& e) {
        m_baseError = e.what();
    }
    m_baseLabel->setWordWrap(true);
    m_baseLabel->setTextFormat(Qt::PlainText);
    m_note->setWordWrap(true);
    m_note->setTextFormat(Qt::PlainText);
    m_seeds->setToolTip(tr("Seeds, separated by commas or spaces; every grid point runs once per seed"));

    auto* grids = new QGroupBox(tr("The paper's grids (Figures 5 and 6)"), this);
    auto* gridLayout = new QGridLayout(grids);
    const struct {
        SweepPreset preset;
        QString label;
    } presets[] = {
        { SweepPreset::LstReduction, tr("LST r ∈ {32, 16, 8, 4}") },
        { SweepPreset::AdapterHidden, tr("Adapter hidden ∈ {6, 12, 24, 48}") },
        { SweepPreset::LoraRank, tr("LoRA rank ∈ {4, 8, 16, 32} (QLoRA's for a QLoRA spec)") },
        { SweepPreset::DroppedLayers, tr("Dropped layers N ∈ {0, 6, 12, 18}") },
    };
    int i = 0;
    for (const auto& p : presets) {
        auto* button = new QPushButton(p.label, grids);
        const SweepPreset preset = p.preset;
        connect(button, &QPushButton::clicked, this, [this, preset] { addPreset(preset); });
        gridLayout->addWidget(button, i / 2, i % 2);
        m_presetButtons.push_back(button);
        ++i;
    }
    gridLayout->addWidget(m_baselines, 2, 0, 1, 2);
    auto* clear = new QPushButton(tr("Clear list"), grids);
    connect(clear, &QPushButton::clicked, this, &SweepDialog::clearSpecs);
    gridLayout->addWidget(clear, 3, 1, Qt::AlignRight);

    m_list->setColumnCount(5);
    m_list->setHeaderLabels({ tr("#"), tr("Method"), tr("Options"), tr("Seed"), tr("Check") });
    m_list->setRootIsDecorated(false);
    m_list->header()->setStretchLastSection(true);

    auto* form = new QFormLayout;
    form->addRow(tr("Base spec:"), m_baseLabel);
    form->addRow(tr("Seeds:"), m_seeds);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(form);
    layout->addWidget(grids);
    layout->addWidget(m_list, 1);
    layout->addWidget(m_note);
    layout->addWidget(m_buttons);
    m_slurmButton = m_buttons->addButton(tr("Export for Slurm…"), QDialogButtonBox::ActionRole);
    m_slurmButton->setObjectName(QStringLiteral("sweepSlurmExportButton"));
    m_slurmButton->setToolTip(
        tr("Write the runs as a Slurm job array (sweep.sbatch) instead of queueing them"));
    connect(m_slurmButton, &QPushButton::clicked, this, [this] {
        SlurmExportDialog dialog(slurmSweep(), this);
        dialog.exec();
    });
    connect(m_buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(m_buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    resize(760, 560);

    readBackboneConfig();
    refreshList();
}

void SweepDialog::readBackboneConfig()
{
    if (!m_base.is_object())
        return;
    const std::string backbone = m_base.value("backbone", std::string("demo"));
    const std::string folder = backbone == "demo" ? demoBackboneDirectory() : backbone;
    const std::string path = folder + "/config.json";
    try {
        // A config.json is a few hundred bytes: read here, not on a worker.
        m_config = T5Config::fromJsonFile(path);
        m_encoderLayers = m_config->numLayers;
        m_decoderLayers = m_config->numDecoderLayers;
        m_layersNote = tr("Backbone %1: %2 encoder + %3 decoder layers.")
                           .arg(text(backbone))
                           .arg(m_encoderLayers)
                           .arg(m_decoderLayers);
    } catch (const std::exception& e) {
        m_config.reset();
        m_layersNote
            = tr("Could not read the backbone's config (%1): assuming T5-base's 12 + 12 layers; specs are "
                 "checked without it.")
                  .arg(text(e.what()));
    }
}

void SweepDialog::setBackboneLayers(std::int64_t encoderLayers, std::int64_t decoderLayers)
{
    m_encoderLayers = encoderLayers;
    m_decoderLayers = decoderLayers;
    m_config.reset();
    m_layersNote
        = tr("Backbone layers set to %1 encoder + %2 decoder.").arg(encoderLayers).arg(decoderLayers);
    refreshList();
}

void SweepDialog::setSeedsText(const QString& seeds)
{
    m_seeds->setText(seeds);
}

QString SweepDialog::seedsText() const
{
    return m_seeds->text();
}

void SweepDialog::setIncludeBaselines(bool include)
{
    m_baselines->setChecked(include);
}

void SweepDialog::clearSpecs()
{
    m_specs.clear();
    m_lastNote.clear();
    m_seedsError.clear();
    refreshList();
}

bool SweepDialog::addPreset(SweepPreset preset)
{
    if (!m_baseError.empty())
        return false;
    std::vector<std::uint64_t> seeds;
    try {
        seeds = SweepGrid::parseSeeds(m_seeds->text().toStdString());
    } catch (const std::exception& e) {
        m_seedsError = text(e.what());
        refreshList();
        return false;
    }
    m_seedsError.clear();
    std::string note;
    const auto specs = SweepGrid::expand(
        m_base, preset, seeds, m_encoderLayers, m_decoderLayers, m_baselines->isChecked(), &note);
    for (const auto& spec : specs)
        if (std::find(m_specs.begin(), m_specs.end(), spec) == m_specs.end())
            m_specs.push_back(spec);
    // The notes of every grid added so far, each once.
    for (const QString& sentence : text(note).split(QStringLiteral(". "), Qt::SkipEmptyParts)) {
        QString line = sentence.trimmed();
        if (!line.endsWith(QLatin1Char('.')))
            line += QLatin1Char('.');
        if (!m_lastNote.contains(line))
            m_lastNote += (m_lastNote.isEmpty() ? QString() : QStringLiteral(" ")) + line;
    }
    refreshList();
    return true;
}

void SweepDialog::refreshList()
{
    m_errors.clear();
    m_list->clear();
    for (std::size_t i = 0; i < m_specs.size(); ++i) {
        const auto& json = m_specs[i];
        std::string error;
        try {
            const RunSpec spec = RunSpec::fromJson(json, "sweep spec " + std::to_string(i + 1));
            if (m_config)
                spec.method.validate(*m_config);
        } catch (const std::exception& e) {
            error = e.what();
        }
        m_errors.push_back(error);
        const auto& method = json.at("method");
        auto* item = new QTreeWidgetItem(m_list,
            { QString::number(i + 1), text(method.value("method", std::string())), methodSummary(method),
                text(json.value("seed", nlohmann::json(0)).dump()), error.empty() ? tr("ok") : text(error) });
        if (!error.empty())
            item->setForeground(4, QColor(180, 0, 0));
        item->setToolTip(2, text(method.dump()));
        item->setToolTip(4, text(error));
    }
    for (int column = 0; column < m_list->columnCount() - 1; ++column)
        m_list->resizeColumnToContents(column);

    if (m_baseError.empty()) {
        m_baseLabel->setText(tr("%1 · backbone %2 · task %3")
                                 .arg(text(m_base.at("method").value("method", std::string("ladder"))),
                                     text(m_base.value("backbone", std::string("demo"))),
                                     text(m_base.at("task").value("name", std::string("auto")))));
    } else {
        m_baseLabel->setText(tr("Invalid base spec: %1").arg(text(m_baseError)));
    }
    for (auto* button : m_presetButtons)
        button->setEnabled(m_baseError.empty());

    QStringList notes { m_layersNote };
    if (!m_lastNote.isEmpty())
        notes << m_lastNote;
    if (!m_seedsError.isEmpty())
        notes << m_seedsError;
    const auto invalid
        = std::count_if(m_errors.begin(), m_errors.end(), [](const auto& e) { return !e.empty(); });
    if (invalid > 0)
        notes << tr(
            "%1 of %2 specs are invalid for this backbone; remove them (Clear list) or change the base.")
                     .arg(invalid)
                     .arg(m_specs.size());
    m_note->setText(notes.join(QLatin1Char(' ')));

    QPushButton* ok = m_buttons->button(QDialogButtonBox::Ok);
    ok->setText(tr("Queue %n run(s)", nullptr, static_cast<int>(m_specs.size())));
    ok->setEnabled(!m_specs.empty() && invalid == 0);
    m_slurmButton->setEnabled(ok->isEnabled());
}

nlohmann::json SweepDialog::slurmSweep() const
{
    return { { "runs", m_specs } };
}

bool SweepDialog::allValid() const
{
    return std::all_of(m_errors.begin(), m_errors.end(), [](const auto& e) { return e.empty(); });
}

std::vector<RunSpec> SweepDialog::specs() const
{
    std::vector<RunSpec> specs;
    if (!allValid())
        return specs;
    for (std::size_t i = 0; i < m_specs.size(); ++i)
        specs.push_back(RunSpec::fromJson(m_specs[i], "sweep spec " + std::to_string(i + 1)));
    return specs;
}

QString SweepDialog::noteText() const
{
    return m_note->text();
}

} // namespace ladder::widgets
