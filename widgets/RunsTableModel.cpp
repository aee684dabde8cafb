#include "RunsTableModel.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <tuple>

#include <QLocale>
#include <nlohmann/json.hpp>

#include "peft/MethodOptions.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder::widgets {
namespace {

constexpr double kBytesPerMegabyte = 1e6; // the CLI's MB
constexpr int kMetricDecimals = 4;

QString jsonValueText(const nlohmann::json& value)
{
    if (value.is_string())
        return QString::fromStdString(value.get<std::string>());
    if (value.is_number_float()) // 32.0 -> "32", 0.1 -> "0.1"
        return QString::number(value.get<double>(), 'g', QLocale::FloatingPointShortest);
    if (value.is_array()) {
        QStringList parts;
        for (const auto& item : value)
            parts << jsonValueText(item);
        return parts.join(QLatin1Char(','));
    }
    return QString::fromStdString(value.dump());
}

auto figuresTuple(const FinalFigures& f)
{
    return std::tie(f.bestValidationMetric, f.bestStep, f.testMetric, f.mainMetricName, f.lastMetric,
        f.peakAllocatedBytes, f.peakReservedBytes, f.initPeakAllocatedBytes, f.evalPeakAllocatedBytes,
        f.weightBytes, f.gradientBytes, f.optimizerBytes, f.trainableParams, f.totalParams, f.backboneParams,
        f.wallSeconds, f.tokensPerSecond);
}

auto recordTuple(const RunRecord& r)
{
    return std::tie(r.id, r.createdAt, r.startedAt, r.finishedAt, r.name, r.specJson, r.specHash, r.method,
        r.methodOptionsJson, r.backbone, r.task, r.seed, r.device, r.status, r.errorMessage, r.queuePosition,
        r.step, r.totalSteps, r.ownerPid);
}

QVariant optionalDouble(const std::optional<double>& value)
{
    return value ? QVariant(*value) : QVariant();
}

} // namespace

bool sameRunRecord(const RunRecord& a, const RunRecord& b)
{
    return recordTuple(a) == recordTuple(b) && figuresTuple(a.figures) == figuresTuple(b.figures);
}

RunsTableModel::RunsTableModel(QObject* parent)
    : QAbstractTableModel(parent)
{
}

int RunsTableModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_runs.size());
}

int RunsTableModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

int RunsTableModel::rowOfRun(std::int64_t runId) const
{
    for (std::size_t i = 0; i < m_runs.size(); ++i)
        if (m_runs[i].id == runId)
            return static_cast<int>(i);
    return -1;
}

const RunRecord* RunsTableModel::runAt(int row) const
{
    if (row < 0 || row >= static_cast<int>(m_runs.size()))
        return nullptr;
    return &m_runs[static_cast<std::size_t>(row)];
}

QString RunsTableModel::optionsSummary(const RunRecord& run)
{
    const auto parsed = tryParseJson(run.methodOptionsJson);
    if (!parsed || !parsed->is_object())
        return QString::fromStdString(oneLine(run.methodOptionsJson, 200));
    const auto& options = *parsed;
    QStringList parts;
    auto add = [&](const char* key, const char* label) {
        if (options.contains(key))
            parts << QStringLiteral("%1=%2").arg(QLatin1String(label), jsonValueText(options.at(key)));
    };
    const std::string& method = run.method;
    if (method == "ladder") {
        add("r", "r");
        if (options.contains("keep") && options.at("keep").is_array() && !options.at("keep").empty())
            add("keep", "keep");
        // init when it is not today's default (fisher): runs stored before that say init=random.
        const auto defaultInit = MethodOptions::defaults("ladder").init;
        if (options.value("init", defaultInit) != defaultInit)
            add("init", "init");
        if (options.value("ablation", std::string("none")) != "none")
            add("ablation", "ablation");
        // The memory options (issue 18), in the JSON only when not their defaults.
        for (const char* key : { "side_checkpoint", "side_attention", "ladder_dtype", "side_heads" })
            add(key, key);
    } else if (method == "adapter") {
        add("hidden", "hidden");
    } else if (method == "lora" || method == "qlora") {
        add("rank", "rank");
        add("alpha", "alpha");
    } else if (method == "prompt") {
        add("prompts", "prompts");
    } else if (method != "full" && method != "bitfit") {
        for (auto it = options.begin(); it != options.end(); ++it)
            if (it.key() != "method")
                parts << QStringLiteral("%1=%2").arg(
                    QString::fromStdString(it.key()), jsonValueText(it.value()));
        return parts.join(QLatin1Char(' ')); // an unknown method: every field is listed
    }
    if (options.value("freeze", 0) > 0)
        add("freeze", "freeze");
    // The frozen backbone's storage: in the JSON only when not fp32 (always for qlora).
    add("backbone_dtype", "backbone");
    add("quant_group_size", "group");
    return parts.join(QLatin1Char(' '));
}

QString RunsTableModel::formatMegabytes(std::int64_t bytes)
{
    return QStringLiteral("%1 MB").arg(
        QLocale::c().toString(static_cast<double>(bytes) / kBytesPerMegabyte, 'f', 1));
}

QString RunsTableModel::formatDuration(double seconds)
{
    if (!std::isfinite(seconds) || seconds < 0)
        return QStringLiteral("?");
    if (seconds < 60)
        return QStringLiteral("%1 s").arg(seconds, 0, 'f', 1);
    const auto total = static_cast<long long>(std::llround(seconds));
    if (total < 3600)
        return QStringLiteral("%1 min %2 s").arg(total / 60).arg(total % 60, 2, 10, QLatin1Char('0'));
    return QStringLiteral("%1 h %2 min").arg(total / 3600).arg((total % 3600) / 60, 2, 10, QLatin1Char('0'));
}

QString RunsTableModel::backboneLabel(const std::string& backbone)
{
    QString path = QString::fromStdString(backbone);
    while (path.size() > 1 && path.endsWith(QLatin1Char('/')))
        path.chop(1);
    const int slash = path.lastIndexOf(QLatin1Char('/'));
    return slash >= 0 ? path.mid(slash + 1) : path;
}

QVariant RunsTableModel::rawValue(const RunRecord& run, Column column) const
{
    const FinalFigures& f = run.figures;
    switch (column) {
    case IdColumn:
        return static_cast<double>(run.id);
    case NameColumn:
        return QString::fromStdString(run.name);
    case MethodColumn:
        return QString::fromStdString(run.method);
    case OptionsColumn:
        return optionsSummary(run);
    case BackboneColumn:
        return QString::fromStdString(run.backbone);
    case TaskColumn:
        return QString::fromStdString(run.task);
    case SeedColumn:
        return run.seed ? QVariant(static_cast<double>(*run.seed)) : QVariant();
    case TrainablePercentColumn:
        return optionalDouble(run.trainablePercent());
    case PeakMemoryColumn:
        return f.peakAllocatedBytes ? QVariant(static_cast<double>(*f.peakAllocatedBytes)) : QVariant();
    case BestValidationColumn:
        return optionalDouble(f.bestValidationMetric);
    case TestColumn:
        return optionalDouble(f.testMetric);
    case WallTimeColumn:
        return optionalDouble(f.wallSeconds);
    case ThroughputColumn:
        return optionalDouble(f.tokensPerSecond);
    case StatusColumn:
        return QString::fromLatin1(toString(run.status));
    case ColumnCount:
        break;
    }
    return {};
}

QVariant RunsTableModel::displayValue(const RunRecord& run, Column column) const
{
    const QVariant raw = rawValue(run, column);
    if (!raw.isValid())
        return QString();
    switch (column) {
    case IdColumn:
        return static_cast<qlonglong>(run.id);
    case SeedColumn:
        return static_cast<qlonglong>(*run.seed);
    case BackboneColumn:
        return backboneLabel(run.backbone);
    case TrainablePercentColumn:
        return QStringLiteral("%1 %").arg(raw.toDouble(), 0, 'f', 3);
    case PeakMemoryColumn:
        return formatMegabytes(*run.figures.peakAllocatedBytes);
    case BestValidationColumn:
    case TestColumn:
        return QString::number(raw.toDouble(), 'f', kMetricDecimals);
    case WallTimeColumn:
        return formatDuration(raw.toDouble());
    case ThroughputColumn: {
        QLocale locale = QLocale::c();
        locale.setNumberOptions(QLocale::DefaultNumberOptions); // 12,345 tok/s
        return tr("%1 tok/s").arg(locale.toString(raw.toDouble(), 'f', 0));
    }
    case StatusColumn:
        if (run.status == RunState::Running && run.totalSteps > 0)
            return tr("running %1/%2").arg(run.step).arg(run.totalSteps);
        return raw;
    default:
        return raw;
    }
}

QVariant RunsTableModel::data(const QModelIndex& index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const RunRecord& run = m_runs[static_cast<std::size_t>(index.row())];
    const auto column = static_cast<Column>(index.column());
    switch (role) {
    case Qt::DisplayRole:
        return displayValue(run, column);
    case Qt::EditRole:
        return column == NameColumn ? QVariant(QString::fromStdString(run.name)) : QVariant();
    case RawValueRole:
        return rawValue(run, column);
    case RunIdRole:
        return static_cast<qlonglong>(run.id);
    case SortRole: {
        const QVariant raw = rawValue(run, column);
        if (raw.typeId() == QMetaType::QString)
            return raw;
        return raw.isValid() ? raw.toDouble() : -std::numeric_limits<double>::infinity();
    }
    case Qt::ToolTipRole:
        switch (column) {
        case BackboneColumn:
            return QString::fromStdString(run.backbone);
        case OptionsColumn:
            return QString::fromStdString(run.methodOptionsJson);
        case BestValidationColumn:
        case TestColumn:
            if (!run.figures.mainMetricName.empty())
                return QString::fromStdString(run.figures.mainMetricName);
            break;
        case PeakMemoryColumn:
            if (run.figures.peakAllocatedBytes) {
                const auto& f = run.figures;
                QString tip = tr("peak allocated (training steps): %L1 bytes").arg(*f.peakAllocatedBytes);
                if (f.initPeakAllocatedBytes)
                    tip += QLatin1Char('\n') + tr("init peak: %L1 bytes").arg(*f.initPeakAllocatedBytes);
                if (f.evalPeakAllocatedBytes)
                    tip += QLatin1Char('\n')
                        + tr("evaluation peak: %L1 bytes").arg(*f.evalPeakAllocatedBytes);
                return tip;
            }
            break;
        case StatusColumn:
            if (!run.errorMessage.empty())
                return QString::fromStdString(run.errorMessage);
            break;
        default:
            break;
        }
        return QString::fromStdString(run.name);
    case Qt::TextAlignmentRole:
        switch (column) {
        case IdColumn:
        case SeedColumn:
        case TrainablePercentColumn:
        case PeakMemoryColumn:
        case BestValidationColumn:
        case TestColumn:
        case WallTimeColumn:
        case ThroughputColumn:
            return QVariant::fromValue(Qt::Alignment(Qt::AlignRight | Qt::AlignVCenter));
        default:
            break;
        }
        break;
    default:
        break;
    }
    return {};
}

QVariant RunsTableModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || section < 0 || section >= ColumnCount)
        return QAbstractTableModel::headerData(section, orientation, role);
    if (role == Qt::DisplayRole) {
        switch (static_cast<Column>(section)) {
        case IdColumn:
            return tr("Id");
        case NameColumn:
            return tr("Name");
        case MethodColumn:
            return tr("Method");
        case OptionsColumn:
            return tr("Options");
        case BackboneColumn:
            return tr("Backbone");
        case TaskColumn:
            return tr("Task");
        case SeedColumn:
            return tr("Seed");
        case TrainablePercentColumn:
            return tr("Trainable");
        case PeakMemoryColumn:
            return tr("Peak");
        case BestValidationColumn:
            return tr("Best val");
        case TestColumn:
            return tr("Test");
        case WallTimeColumn:
            return tr("Wall time");
        case ThroughputColumn:
            return tr("Throughput");
        case StatusColumn:
            return tr("Status");
        case ColumnCount:
            break;
        }
    } else if (role == Qt::ToolTipRole) {
        switch (static_cast<Column>(section)) {
        case TrainablePercentColumn:
            return tr("Trainable parameters in percent of the backbone's");
        case PeakMemoryColumn:
            return tr("Peak allocated training memory (MB = 10^6 bytes)");
        case BestValidationColumn:
            return tr("Main metric of the best validation evaluation");
        case TestColumn:
            return tr("Main metric of the best checkpoint on the test split");
        case NameColumn:
            return tr("The run's name (double-click to rename)");
        case ThroughputColumn:
            return tr("Training tokens per second over the run's steps (source and target tokens)");
        default:
            break;
        }
    }
    return {};
}

Qt::ItemFlags RunsTableModel::flags(const QModelIndex& index) const
{
    Qt::ItemFlags f = QAbstractTableModel::flags(index);
    if (index.isValid() && index.column() == NameColumn)
        f |= Qt::ItemIsEditable;
    return f;
}

bool RunsTableModel::setData(const QModelIndex& index, const QVariant& value, int role)
{
    if (role != Qt::EditRole || !index.isValid() || index.column() != NameColumn
        || index.row() >= static_cast<int>(m_runs.size()))
        return false;
    const QString name = value.toString().simplified();
    auto& run = m_runs[static_cast<std::size_t>(index.row())];
    if (name.isEmpty() || name.toStdString() == run.name)
        return false;
    run.name = name.toStdString();
    Q_EMIT dataChanged(index, index);
    Q_EMIT renameRequested(static_cast<qint64>(run.id), name);
    return true;
}

void RunsTableModel::setRuns(const std::vector<ladder::RunRecord>& runs)
{
    // 1. Rows whose run is gone, removed from the bottom up (contiguous blocks in one call each).
    std::set<std::int64_t> incoming;
    for (const auto& run : runs)
        incoming.insert(run.id);
    for (int row = static_cast<int>(m_runs.size()) - 1; row >= 0;) {
        if (incoming.count(m_runs[static_cast<std::size_t>(row)].id)) {
            --row;
            continue;
        }
        int first = row;
        while (first > 0 && !incoming.count(m_runs[static_cast<std::size_t>(first - 1)].id))
            --first;
        beginRemoveRows(QModelIndex(), first, row);
        m_runs.erase(m_runs.begin() + first, m_runs.begin() + row + 1);
        endRemoveRows();
        row = first - 1;
    }
    // 2. What is left must be a prefix of the new list in the same order; anything else resets.
    const std::size_t kept = m_runs.size();
    bool prefix = kept <= runs.size();
    for (std::size_t i = 0; prefix && i < kept; ++i)
        prefix = m_runs[i].id == runs[i].id;
    if (!prefix) {
        beginResetModel();
        m_runs = runs;
        endResetModel();
        return;
    }
    // 3. Changed rows.
    for (std::size_t i = 0; i < kept; ++i) {
        if (sameRunRecord(m_runs[i], runs[i]))
            continue;
        m_runs[i] = runs[i];
        const int row = static_cast<int>(i);
        Q_EMIT dataChanged(index(row, 0), index(row, ColumnCount - 1));
    }
    // 4. New rows at the end.
    if (runs.size() > kept) {
        beginInsertRows(QModelIndex(), static_cast<int>(kept), static_cast<int>(runs.size()) - 1);
        m_runs.insert(m_runs.end(), runs.begin() + static_cast<std::ptrdiff_t>(kept), runs.end());
        endInsertRows();
    }
}

} // namespace ladder::widgets
