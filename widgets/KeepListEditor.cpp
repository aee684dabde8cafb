#include "KeepListEditor.h"

#include <algorithm>

#include <QCheckBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QVBoxLayout>

namespace ladder::widgets {
namespace {
constexpr int kColumns = 12;
constexpr int kPaperDropPeriod = 4; // the paper's T5-base list drops layers 0, 4 and 8
} // namespace

KeepListEditor::KeepListEditor(QWidget* parent)
    : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    m_grid = new QGridLayout;
    m_grid->setHorizontalSpacing(4);
    layout->addLayout(m_grid);

    auto* presets = new QHBoxLayout;
    const struct {
        Preset preset;
        const char* text;
        const char* name;
    } buttons[] = { { Preset::All, "All", "keepPresetAll" },
        { Preset::PaperT5Base, "Paper (T5-base)", "keepPresetPaper" },
        { Preset::EveryOther, "Every other", "keepPresetEveryOther" },
        { Preset::LastOnly, "Last only", "keepPresetLast" } };
    for (const auto& b : buttons) {
        auto* button = new QPushButton(tr(b.text));
        button->setObjectName(QString::fromLatin1(b.name));
        button->setAutoDefault(false);
        const Preset preset = b.preset;
        connect(button, &QPushButton::clicked, this, [this, preset] { applyPreset(preset); });
        presets->addWidget(button);
    }
    presets->addStretch(1);
    layout->addLayout(presets);
    m_summary = new QLabel;
    m_summary->setObjectName(QStringLiteral("keepSummary"));
    layout->addWidget(m_summary);
    updateSummary();
}

void KeepListEditor::setLayerCount(int layers)
{
    layers = std::max(0, layers);
    if (layers == layerCount())
        return;
    const auto previous = keep();
    const int oldCount = layerCount();
    qDeleteAll(m_boxes);
    m_boxes.clear();
    for (int i = 0; i < layers; ++i) {
        auto* box = new QCheckBox(QString::number(i));
        box->setObjectName(QStringLiteral("keepLayer%1").arg(i));
        box->setToolTip(tr("Keep side layer %1 (encoder and decoder)").arg(i));
        const bool wasKept = i >= oldCount || previous.empty()
            || std::find(previous.begin(), previous.end(), i) != previous.end();
        box->setChecked(wasKept);
        connect(box, &QCheckBox::toggled, this, [this] {
            updateSummary();
            Q_EMIT keepChanged();
        });
        m_grid->addWidget(box, i / kColumns, i % kColumns);
        m_boxes.push_back(box);
    }
    updateSummary();
    Q_EMIT keepChanged();
}

std::vector<std::int64_t> KeepListEditor::keep() const
{
    std::vector<std::int64_t> kept;
    for (int i = 0; i < layerCount(); ++i)
        if (m_boxes[static_cast<std::size_t>(i)]->isChecked())
            kept.push_back(i);
    if (static_cast<int>(kept.size()) == layerCount())
        return {};
    return kept;
}

bool KeepListEditor::anyKept() const
{
    return std::any_of(m_boxes.begin(), m_boxes.end(), [](const QCheckBox* b) { return b->isChecked(); });
}

void KeepListEditor::setKeep(const std::vector<std::int64_t>& keep)
{
    for (int i = 0; i < layerCount(); ++i) {
        const bool on = keep.empty() || std::find(keep.begin(), keep.end(), i) != keep.end();
        QSignalBlocker block(m_boxes[static_cast<std::size_t>(i)]);
        m_boxes[static_cast<std::size_t>(i)]->setChecked(on);
    }
    updateSummary();
    Q_EMIT keepChanged();
}

std::vector<std::int64_t> KeepListEditor::presetLayers(Preset preset, int layers)
{
    std::vector<std::int64_t> kept;
    for (int i = 0; i < layers; ++i) {
        bool on = true;
        switch (preset) {
        case Preset::All:
            break;
        case Preset::PaperT5Base:
            on = i % kPaperDropPeriod != 0;
            break;
        case Preset::EveryOther:
            on = i % 2 == 1;
            break;
        case Preset::LastOnly:
            on = i == layers - 1;
            break;
        }
        if (on)
            kept.push_back(i);
    }
    return kept;
}

void KeepListEditor::applyPreset(Preset preset)
{
    auto kept = presetLayers(preset, layerCount());
    if (kept.empty() && layerCount() > 0) // e.g. every other at depth 1: keep the only layer
        kept.push_back(layerCount() - 1);
    // setKeep treats an empty list as all, so a preset that keeps every layer is exact either way.
    setKeep(kept);
}

QCheckBox* KeepListEditor::layerBox(int index) const
{
    return index >= 0 && index < layerCount() ? m_boxes[static_cast<std::size_t>(index)] : nullptr;
}

void KeepListEditor::updateSummary()
{
    const auto kept = keep();
    if (layerCount() == 0) {
        m_summary->setText(tr("No backbone chosen"));
        return;
    }
    if (!anyKept()) {
        m_summary->setText(tr("No side layer kept: check at least one"));
        return;
    }
    if (kept.empty()) {
        m_summary->setText(tr("All %1 side layers kept").arg(layerCount()));
        return;
    }
    QStringList names;
    for (auto k : kept)
        names << QString::number(k);
    m_summary->setText(tr("%1 of %2 side layers kept: %3")
                           .arg(kept.size())
                           .arg(layerCount())
                           .arg(names.isEmpty() ? tr("none") : names.join(QLatin1Char(','))));
}

} // namespace ladder::widgets
