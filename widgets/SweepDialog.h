#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <QDialog>
#include <nlohmann/json.hpp>

#include "SweepGrid.h"
#include "model/T5Config.h"
#include "train/RunSpec.h"

class QCheckBox;
class QDialogButtonBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QTreeWidget;

namespace ladder::widgets {

// The paper's sweeps one click away. Given a base run spec (the experiment form's), each preset button
// adds its grid for the seeds typed in (SweepGrid): LST r in {32, 16, 8, 4}, Adapter hidden in
// {6, 12, 24, 48}, LoRA rank in {4, 8, 16, 32}, dropped layers N in {0, 6, 12, 18} (scaled to backbones
// with fewer than 24 layers, which the dialog says). Every spec is checked with RunSpec::fromJson and,
// when the backbone's config.json can be read, MethodOptions::validate against it; the list shows each
// spec's error, and OK ("Queue N runs") is enabled only when all are valid; so is Export for Slurm...,
// which writes them as a Slurm job array instead (SlurmExportDialog).
//
//   SweepDialog dialog(form->specJson(), this);
//   if (dialog.exec() == QDialog::Accepted)
//       for (const RunSpec& spec : dialog.specs()) queue->enqueue(spec);
class SweepDialog : public QDialog {
    Q_OBJECT

public:
    // `baseSpec`: a run spec as `ladder train` reads it. An invalid base is reported in the dialog and
    // disables the presets.
    explicit SweepDialog(const nlohmann::json& baseSpec, QWidget* parent = nullptr);

    // Overrides the backbone's layer counts (and skips reading its config.json), e.g. for a backbone that
    // is not on this machine yet.
    void setBackboneLayers(std::int64_t encoderLayers, std::int64_t decoderLayers);
    std::int64_t encoderLayers() const { return m_encoderLayers; }
    std::int64_t decoderLayers() const { return m_decoderLayers; }

    // The specs listed, validated (empty when any is invalid) and as JSON (all, valid or not).
    std::vector<RunSpec> specs() const;
    const std::vector<nlohmann::json>& specJsons() const { return m_specs; }
    // Per spec: empty when valid, else the error.
    const std::vector<std::string>& errors() const { return m_errors; }
    bool allValid() const;

    // The listed specs as a sweep file {"runs": [...]} (`ladder sweep --config` reads it): what Export for
    // Slurm... writes (SlurmExportDialog; enabled when OK is).
    nlohmann::json slurmSweep() const;
    QPushButton* slurmExportButton() const { return m_slurmButton; }

    QString noteText() const;
    QString seedsText() const;

public Q_SLOTS:
    // Adds the preset's grid for the current seeds (what the buttons do). False (with the reason shown)
    // when the seeds do not parse or the base is invalid.
    bool addPreset(ladder::widgets::SweepPreset preset);
    void setSeedsText(const QString& text);
    // Figure 6: the dropped-layers preset also adds Adapters, LoRA and BitFit freezing N layers.
    void setIncludeBaselines(bool include);
    void clearSpecs();

private:
    void readBackboneConfig();
    void refreshList();

    nlohmann::json m_base;
    std::string m_baseError;
    std::optional<T5Config> m_config;
    std::int64_t m_encoderLayers = 12;
    std::int64_t m_decoderLayers = 12;
    QString m_layersNote;
    std::vector<nlohmann::json> m_specs;
    std::vector<std::string> m_errors;
    QString m_lastNote; // what the grids added so far scaled or reset
    QString m_seedsError;

    QLabel* m_baseLabel = nullptr;
    QLineEdit* m_seeds = nullptr;
    QCheckBox* m_baselines = nullptr;
    QTreeWidget* m_list = nullptr;
    QLabel* m_note = nullptr;
    QDialogButtonBox* m_buttons = nullptr;
    std::vector<QPushButton*> m_presetButtons;
    QPushButton* m_slurmButton = nullptr;
};

} // namespace ladder::widgets
