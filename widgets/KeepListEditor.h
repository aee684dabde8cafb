#pragma once

#include <cstdint>
#include <vector>

#include <QWidget>

class QCheckBox;
class QGridLayout;
class QLabel;

namespace ladder::widgets {

// LST's kept side layers: one checkbox per backbone layer (0-based, the same list for the encoder and
// the decoder) and presets. keep() is what MethodOptions::keep holds: empty when every layer is kept.
class KeepListEditor : public QWidget {
    Q_OBJECT

public:
    enum class Preset { All, PaperT5Base, EveryOther, LastOnly };

    explicit KeepListEditor(QWidget* parent = nullptr);

    // Rebuilds the checkboxes for `layers` layers, keeping the checked state of the indices that remain
    // (a new layer is checked).
    void setLayerCount(int layers);
    int layerCount() const { return static_cast<int>(m_boxes.size()); }

    // Empty = all layers. Check anyKept() first: with every box cleared keep() is empty too.
    std::vector<std::int64_t> keep() const;
    bool anyKept() const;
    // Indices >= layerCount() are ignored; empty checks every layer.
    void setKeep(const std::vector<std::int64_t>& keep);

    // The layers a preset keeps at a depth:
    //   All          every layer
    //   PaperT5Base  the paper's T5-base list 1,2,3,5,6,7,9,10,11: every layer but each fourth from 0
    //                (at 12 layers exactly the paper's list)
    //   EveryOther   1, 3, 5, ... (the last layer of every pair, so the top layer is kept at even depths)
    //   LastOnly     the top layer
    static std::vector<std::int64_t> presetLayers(Preset preset, int layers);
    void applyPreset(Preset preset);

    QCheckBox* layerBox(int index) const;

Q_SIGNALS:
    void keepChanged();

private:
    QGridLayout* m_grid = nullptr;
    QLabel* m_summary = nullptr;
    std::vector<QCheckBox*> m_boxes;

    void updateSummary();
};

} // namespace ladder::widgets
