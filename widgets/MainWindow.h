#pragma once

#include <QMainWindow>

namespace ladder::widgets {

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(QWidget* parent = nullptr);
};

} // namespace ladder::widgets
