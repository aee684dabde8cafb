#include "MainWindow.h"

namespace ladder::widgets {
MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {}
} // namespace ladder::widgets
