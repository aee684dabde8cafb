#pragma once

// Helpers of the task-data tests test_glue, test_generic_task and test_batcher: a GLUE folder of the shared
// fixtures, a file written with its folders, the ids of examples, and the message of a ladder::Error.
// Header-only: each of those test executables includes it.

#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <QString>
#include <QTest>

#include "TestSupport.h"
#include "data/Task.h"
#include "util/Error.h"

namespace ladder::test::task_data {

inline std::string glue(const std::string& folder)
{
    return ladder::test::fixture("glue/" + folder);
}

inline void writeFile(const std::string& path, const std::string& bytes)
{
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream out(path, std::ios::binary);
    out << bytes;
}

inline std::vector<std::string> ids(const std::vector<TextExample>& examples)
{
    std::vector<std::string> out;
    for (const auto& ex : examples)
        out.push_back(ex.id);
    return out;
}

// The message of the ladder::Error `f` throws; fails the test when it throws nothing.
template <typename F> std::string errorOf(F&& f)
{
    try {
        f();
    } catch (const ladder::Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("NOT A ladder::Error: ") + e.what();
    }
    return "NO ERROR";
}

} // namespace ladder::test::task_data

#define VERIFY_CONTAINS(haystack, needle)                                                                    \
    QVERIFY2(std::string(haystack).find(needle) != std::string::npos,                                        \
        qPrintable(                                                                                          \
            QString::fromStdString("'" + std::string(haystack) + "' lacks '" + std::string(needle) + "'")))
