#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <QWidget>

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QSpinBox;
class QStackedWidget;

namespace ladder::widgets {

// Task picker: a built-in demo task (the WordNet tasks, and "Scenes (VL demo)": the built-in
// vision-and-language scene demo), a GLUE folder in the original TSV layout (the task is detected from its
// files as `ladder train` does), the user's own JSONL/CSV/TSV file with a column mapping, or a
// vision-and-language task folder (issue 22: train/validation/test.jsonl beside a visual feature file; its
// feature file, visual tokens per image and task types). taskJson() is the "task" object of a run spec.
class TaskPicker : public QWidget {
    Q_OBJECT

public:
    explicit TaskPicker(QWidget* parent = nullptr);

    nlohmann::json taskJson() const;
    // Shows a run spec's task object; unknown types fall back to the demo.
    void setTaskJson(const nlohmann::json& task);
    // What is wrong before a run can use it (a missing path, an undetectable GLUE folder); empty when
    // nothing is.
    QString problem() const;

    void setGluePath(const QString& folder);
    void setGenericPath(const QString& file);
    // Shows the VL page with this task folder (the feature file stays as typed).
    void setVlPath(const QString& folder);
    // Whether the task is a vision-and-language one (task.type "vl": a VL folder or the scene demo).
    bool isVl() const;
    QString detectedGlueTask() const { return m_detected; }

Q_SIGNALS:
    void changed();
    // A folder or file was chosen (for the recent list).
    void pathChosen(const QString& path);

private:
    QWidget* makeDemoPage();
    QWidget* makeGluePage();
    QWidget* makeGenericPage();
    QWidget* makeVlPage();
    nlohmann::json vlTaskJson() const;
    QString vlProblem() const;
    void updateVlPlaceholder();
    bool sceneDemoChosen() const;
    void detectGlue();
    QString type() const;

    QComboBox* m_type = nullptr;
    QStackedWidget* m_pages = nullptr;
    QComboBox* m_demoTask = nullptr;
    QLabel* m_demoInfo = nullptr;
    QLineEdit* m_gluePath = nullptr;
    QLabel* m_glueDetected = nullptr;
    QString m_detected;
    QString m_glueError;
    QLineEdit* m_genericPath = nullptr;
    QLineEdit* m_textColumns = nullptr;
    QLineEdit* m_labelColumn = nullptr;
    QComboBox* m_kind = nullptr;
    QDoubleSpinBox* m_validationFraction = nullptr;
    QDoubleSpinBox* m_testFraction = nullptr;
    QLineEdit* m_vlPath = nullptr; // empty: the built-in scene demo
    QLineEdit* m_vlFeatures = nullptr; // empty: <folder>/features.safetensors (or the folder's task.json's)
    QSpinBox* m_vlTokens = nullptr; // 0: the feature file's boxes
    std::vector<QCheckBox*> m_vlTasks; // one per vlTaskTypes(); all checked: no "tasks" filter
    // What a loaded spec's VL task had that the widgets do not show: its name (kept while the folder is
    // the one it came with) and its "tasks" list in its own order (kept while the same types are checked).
    std::string m_vlName = "auto";
    QString m_vlNamePath;
    std::vector<std::string> m_vlLoadedTasks;
};

} // namespace ladder::widgets
