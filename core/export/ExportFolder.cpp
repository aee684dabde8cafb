#include "export/ExportFolder.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "util/Error.h"

namespace ladder {

void writeTextFile(const std::string& path, const std::string& text)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out)
        throw Error("cannot write " + path + ": " + std::strerror(errno));
    out << text;
    out.close();
    if (!out)
        throw Error("writing " + path + " failed: " + std::strerror(errno));
}

void writeJsonFile(const std::string& path, const nlohmann::json& value)
{
    writeTextFile(path, value.dump(2) + "\n");
}

void copyFile(const std::string& from, const std::string& to)
{
    std::error_code ec;
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec);
    if (ec)
        throw Error("cannot copy " + from + " to " + to + ": " + ec.message());
}

} // namespace ladder
