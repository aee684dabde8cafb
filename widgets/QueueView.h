#pragma once

#include <QWidget>

class QFrame;
class QLabel;
class QPushButton;
class QTableView;

namespace ladder::widgets {

class RunQueueModel;

// The queue tab: the runs table (progress bars in the Progress column) and the queue's buttons. It does
// nothing to the store itself: every button emits a request with the selected run's id, which the main
// window hands to the RunQueueController. Esc cancels the selected run only while the keyboard focus is in
// this view (a Qt::WidgetWithChildrenShortcut): an Esc in any other view's field cancels nothing. While
// the queue is paused and runs are queued, a banner says "N runs are queued" with a Start button.
class QueueView : public QWidget {
    Q_OBJECT

public:
    explicit QueueView(RunQueueModel* model, QWidget* parent = nullptr);

    // 0 when nothing is selected.
    qint64 selectedRun() const;
    // Selects a run's row (false when it is not in the model).
    bool selectRun(qint64 runId);
    QTableView* table() const { return m_table; }
    void setPaused(bool paused);
    bool isPaused() const;
    // The banner's text ("3 runs are queued"); empty while the banner is hidden.
    QString bannerText() const;
    // Queued runs in the model.
    int queuedCount() const;

Q_SIGNALS:
    void selectedRunChanged(qint64 runId);
    void cancelRequested(qint64 runId);
    void removeRequested(qint64 runId);
    void moveRequested(qint64 runId, int offset);
    void duplicateRequested(qint64 runId);
    void resumeRequested(qint64 runId);
    void pauseToggled(bool paused);

private:
    void updateButtons();
    void updateBanner();
    void modelReset();

    RunQueueModel* m_model;
    QTableView* m_table = nullptr;
    QPushButton* m_cancel = nullptr;
    QPushButton* m_remove = nullptr;
    QPushButton* m_up = nullptr;
    QPushButton* m_down = nullptr;
    QPushButton* m_duplicate = nullptr;
    QPushButton* m_resume = nullptr;
    QPushButton* m_pause = nullptr;
    QLabel* m_summary = nullptr;
    QFrame* m_banner = nullptr;
    QLabel* m_bannerLabel = nullptr;
    QPushButton* m_start = nullptr;
    qint64 m_selected = 0;
};

} // namespace ladder::widgets
