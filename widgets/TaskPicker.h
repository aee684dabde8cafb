#pragma once

#include <nlohmann/json.hpp>

#include <QWidget>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QStackedWidget;

namespace ladder::widgets {

// Task picker: a built-in demo task, a GLUE folder in the original TSV layout (the task is detected from
// its files as `ladder train` does), or the user's own JSONL/CSV/TSV file with a column mapping. taskJson()
// is the "task" object of a run spec.
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
    QString detectedGlueTask() const { return m_detected; }

Q_SIGNALS:
    void changed();
    // A folder or file was chosen (for the recent list).
    void pathChosen(const QString& path);

private:
    QWidget* makeDemoPage();
    QWidget* makeGluePage();
    QWidget* makeGenericPage();
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
};

} // namespace ladder::widgets
