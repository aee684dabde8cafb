#include "BackbonePicker.h"

#include <QComboBox>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFileSystemWatcher>
#include <QGuiApplication>
#include <QHBoxLayout>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLocale>
#include <QPushButton>
#include <QTimer>
#include <QVBoxLayout>

#include "train/DemoPaths.h"

namespace ladder::widgets {
namespace {
constexpr const char* kDemoId = "demo";
constexpr const char* kDemoLlamaId = "demo-llama"; // the demo's decoder (train/DemoPaths.h)
constexpr int kFirstFolder = 2; // the two built-in demo backbones come first

// The folder of a combo entry: a demo name's built folder, else the entry itself.
QString folderOf(const QString& id)
{
    return QString::fromStdString(ladder::backboneFolderFor(id.toStdString()));
}
constexpr double kMB = 1e6;
constexpr int kSettleMs = 200;

int dtypeBytes(const QString& dtype)
{
    if (dtype == QLatin1String("float16") || dtype == QLatin1String("bfloat16"))
        return 2;
    return 4;
}
} // namespace

BackboneInfo BackboneInfo::read(const QString& id, const QString& folder)
{
    BackboneInfo info;
    info.id = id;
    info.folder = folder;
    const QString path = QDir(folder).filePath(QStringLiteral("config.json"));
    if (!QFileInfo::exists(path)) {
        info.error = isDemoBackboneName(id.toStdString())
            ? QObject::tr("the demo backbone is not built yet (%1 is missing; run `ladder demo` once)")
                  .arg(path)
            : QObject::tr("%1: missing (a HuggingFace folder has config.json, the weights and its tokenizer)")
                  .arg(path);
        return info;
    }
    QFile file(path);
    QJsonObject object;
    if (file.open(QIODevice::ReadOnly))
        object = QJsonDocument::fromJson(file.readAll()).object();
    const auto modelType = object.value(QStringLiteral("model_type")).toString().toStdString();
    try {
        if (LlamaConfig::supportsModelType(modelType)) {
            info.llama = LlamaConfig::fromJsonFile(path.toStdString());
            info.shape = info.llama->shape();
            info.parameters = info.llama->parameterCount();
        } else {
            info.config = T5Config::fromJsonFile(path.toStdString());
            info.shape = info.config->shape();
            info.parameters = info.config->parameterCount();
        }
    } catch (const std::exception& e) {
        info.error = QString::fromUtf8(e.what());
        return info;
    }
    // transformers 4 writes torch_dtype, transformers 5 dtype.
    info.storedDtype
        = object.value(QStringLiteral("torch_dtype"))
              .toString(object.value(QStringLiteral("dtype")).toString(QStringLiteral("float32")));
    const QDir dir(folder);
    if (info.llama) {
        if (!QFileInfo::exists(dir.filePath(QStringLiteral("tokenizer.model")))
            && !QFileInfo::exists(dir.filePath(QStringLiteral("tokenizer.json"))))
            info.error = QObject::tr("%1: no tokenizer.model or tokenizer.json (the decoder's tokenizer)")
                             .arg(folder);
    } else if (!QFileInfo::exists(dir.filePath(QStringLiteral("spiece.model")))) {
        info.error
            = QObject::tr("%1: no spiece.model (the backbone folder needs its SentencePiece tokenizer)")
                  .arg(folder);
    }
    return info;
}

int BackboneInfo::keepableLayers() const
{
    if (config)
        return static_cast<int>(std::min(config->numLayers, config->numDecoderLayers));
    if (llama)
        return static_cast<int>(llama->numHiddenLayers);
    return 0;
}

QString BackboneInfo::summary() const
{
    if (!hasConfig())
        return error;
    const QLocale locale(QLocale::English); // digit grouping: 9,419,520
    const double fp32MB = static_cast<double>(parameters) * 4 / kMB;
    const double storedMB = static_cast<double>(parameters) * dtypeBytes(storedDtype) / kMB;
    QString shapeText;
    if (config) {
        shapeText = QObject::tr("T5 · %1+%2 layers, d_model %3")
                        .arg(config->numLayers)
                        .arg(config->numDecoderLayers)
                        .arg(config->dModel);
    } else {
        const auto& c = *llama;
        const QString name = c.modelType == "qwen2" ? QStringLiteral("Qwen2")
            : c.modelType == "mistral"              ? QStringLiteral("Mistral")
                                                    : QStringLiteral("Llama");
        shapeText = QObject::tr("%1 (decoder-only) · %2 layers, hidden %3, %4 heads / %5 key-value heads")
                        .arg(name)
                        .arg(c.numHiddenLayers)
                        .arg(c.hiddenSize)
                        .arg(c.numAttentionHeads)
                        .arg(c.numKeyValueHeads);
    }
    QString text = QObject::tr("%1 parameters · stored %2 (%3 MB) · %4 MB as fp32 · %5")
                       .arg(locale.toString(static_cast<qlonglong>(parameters)), storedDtype)
                       .arg(storedMB, 0, 'f', 1)
                       .arg(fp32MB, 0, 'f', 1)
                       .arg(shapeText);
    if (!error.isEmpty())
        text += QStringLiteral("\n") + error;
    return text;
}

BackbonePicker::BackbonePicker(QWidget* parent)
    : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    auto* row = new QHBoxLayout;
    m_combo = new QComboBox;
    m_combo->setObjectName(QStringLiteral("backboneCombo"));
    m_combo->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    m_combo->setMinimumContentsLength(24);
    m_combo->addItem(tr("Built-in demo backbone"), QString::fromLatin1(kDemoId));
    m_combo->addItem(tr("Built-in demo decoder (Llama)"), QString::fromLatin1(kDemoLlamaId));
    m_add = new QPushButton(tr("Add folder…"));
    m_add->setObjectName(QStringLiteral("addBackboneButton"));
    m_add->setAutoDefault(false);
    row->addWidget(m_combo, 1);
    row->addWidget(m_add);
    layout->addLayout(row);
    m_details = new QLabel;
    m_details->setObjectName(QStringLiteral("backboneDetails"));
    m_details->setWordWrap(true);
    m_details->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_details);

    connect(
        m_combo, qOverload<int>(&QComboBox::currentIndexChanged), this, &BackbonePicker::selectionChanged);
    connect(m_add, &QPushButton::clicked, this, &BackbonePicker::chooseFolder);

    m_watcher = new QFileSystemWatcher(this);
    m_settle = new QTimer(this);
    m_settle->setSingleShot(true);
    m_settle->setInterval(kSettleMs);
    connect(m_watcher, &QFileSystemWatcher::directoryChanged, m_settle, qOverload<>(&QTimer::start));
    connect(m_watcher, &QFileSystemWatcher::fileChanged, m_settle, qOverload<>(&QTimer::start));
    connect(m_settle, &QTimer::timeout, this, [this] {
        watchDemo();
        refresh();
    });
    connect(qApp, &QGuiApplication::applicationStateChanged, this, [this](Qt::ApplicationState state) {
        if (state == Qt::ApplicationActive)
            refresh();
    });
    watchDemo();
    selectionChanged();
}

void BackbonePicker::watchDemo()
{
    // The demo folder once it exists (a rebuild replaces its files), else its nearest existing parent
    // (`ladder demo` publishes the folder by renaming a finished staging folder into it).
    QStringList wanted;
    const QString demo = QString::fromStdString(demoBackboneDirectory());
    QFileInfo dir(demo);
    if (dir.isDir())
        wanted << dir.absoluteFilePath();
    // The decoder is published beside it (`ladder demo` builds both): the same parent.
    const QFileInfo llama(QString::fromStdString(demoLlamaBackboneDirectory()));
    if (llama.isDir())
        wanted << llama.absoluteFilePath();
    QString parent = dir.absolutePath(); // the folder that holds the demo folder
    while (!QFileInfo(parent).isDir()) {
        const QString up = QFileInfo(parent).absolutePath();
        if (up == parent)
            break;
        parent = up;
    }
    if (QFileInfo(parent).isDir())
        wanted << parent;
    const QStringList watched = m_watcher->directories();
    for (const QString& path : watched)
        if (!wanted.contains(path))
            m_watcher->removePath(path);
    for (const QString& path : wanted)
        if (!watched.contains(path))
            m_watcher->addPath(path);
}

QStringList BackbonePicker::watchedPaths() const
{
    return m_watcher->directories();
}

void BackbonePicker::refresh()
{
    const QString id = backbone();
    const BackboneInfo info = BackboneInfo::read(id, folderOf(id));
    if (info.error == m_info.error && info.parameters == m_info.parameters
        && info.storedDtype == m_info.storedDtype && info.folder == m_info.folder
        && info.hasConfig() == m_info.hasConfig() && info.shape.architecture == m_info.shape.architecture)
        return;
    selectionChanged();
}

QString BackbonePicker::backbone() const
{
    return m_combo->currentData().toString();
}

bool BackbonePicker::addFolder(const QString& folder, bool select, QString* error)
{
    const QString clean = QDir::cleanPath(QFileInfo(folder).absoluteFilePath());
    int index = m_combo->findData(clean);
    if (index < 0) {
        const BackboneInfo info = BackboneInfo::read(clean, clean);
        if (!info.hasConfig()) {
            if (error)
                *error = info.error;
            return false;
        }
        m_combo->insertItem(kFirstFolder, QDir(clean).dirName() + QStringLiteral(" — ") + clean, clean);
        index = kFirstFolder;
        Q_EMIT foldersChanged(folders());
    }
    if (select)
        m_combo->setCurrentIndex(index);
    return true;
}

bool BackbonePicker::setBackbone(const QString& backbone, QString* error)
{
    if (isDemoBackboneName(backbone.toStdString())) {
        m_combo->setCurrentIndex(m_combo->findData(backbone));
        return true;
    }
    return addFolder(backbone, true, error);
}

QStringList BackbonePicker::folders() const
{
    QStringList list;
    for (int i = kFirstFolder; i < m_combo->count(); ++i)
        list << m_combo->itemData(i).toString();
    return list;
}

void BackbonePicker::chooseFolder()
{
    const QString folder
        = QFileDialog::getExistingDirectory(this, tr("HuggingFace T5 or Llama-family folder"));
    if (folder.isEmpty())
        return;
    QString error;
    if (!addFolder(folder, true, &error))
        Q_EMIT problem(error);
}

void BackbonePicker::selectionChanged()
{
    const QString id = backbone();
    m_info = BackboneInfo::read(id, folderOf(id));
    m_details->setText(m_info.summary());
    Q_EMIT backboneChanged();
}

} // namespace ladder::widgets
