#include "TestSupport.h"

#include <filesystem>

#include <ATen/ATen.h>
#include <QDir>
#include <QProcess>
#include <QStringList>
#include <QTemporaryDir>

namespace ladder::test {

std::string fixturesDir()
{
    const std::string dir = LADDER_FIXTURES_DIR;
    return std::filesystem::is_directory(dir) ? dir : std::string();
}

bool hasFixtures()
{
    return !fixturesDir().empty();
}

std::string fixture(const std::string& relative)
{
    return std::string(LADDER_FIXTURES_DIR) + "/" + relative;
}

double relativeError(const at::Tensor& actual, const at::Tensor& reference)
{
    const auto a = actual.to(at::kDouble);
    const auto b = reference.to(at::kDouble);
    const double denom = b.norm().item<double>();
    const double num = (a - b).norm().item<double>();
    return denom == 0.0 ? num : num / denom;
}

std::string makeTempDir()
{
    static std::vector<std::unique_ptr<QTemporaryDir>> dirs; // removed when the test exits
    dirs.push_back(std::make_unique<QTemporaryDir>());
    return dirs.back()->path().toStdString();
}

CommandResult runCli(const QStringList& args, int timeoutMs)
{
    QProcess p;
    p.start(QString::fromUtf8(LADDER_CLI_PATH), args);
    CommandResult r;
    if (!p.waitForFinished(timeoutMs)) {
        p.kill();
        p.waitForFinished();
        r.err = "timed out";
        return r;
    }
    r.exitCode = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    r.out = p.readAllStandardOutput().toStdString();
    r.err = p.readAllStandardError().toStdString();
    return r;
}

} // namespace ladder::test
