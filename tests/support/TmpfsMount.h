#pragma once

// A small tmpfs mounted for one test (a disk that fills): mount(2) as `mount -t tmpfs -o size=N tmpfs DIR`
// does, unmounted when the object goes (lazily, MNT_DETACH, so that a child process still holding a file
// cannot keep it mounted), whether the test passed or failed. Where mounting is refused (not root, no
// CAP_SYS_ADMIN, a container without it), mounted() is false and reason() says why: the test must QSKIP
// with it, never pass without the disk. A program whose tmpfs tests were skipped so and none failed prints
// "SKIPPED: <reason>" at its end (reportTmpfsSkips, from cleanupTestCase), which tests/CMakeLists.txt's
// SKIP_REGULAR_EXPRESSION turns into CTest's "skipped". Header-only.

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace ladder::test {

// The reasons of the mounts refused in this program.
inline std::string& tmpfsRefusals()
{
    static std::string reasons;
    return reasons;
}

// At the end of a test program (cleanupTestCase): when a tmpfs was refused and no test function failed,
// prints "SKIPPED: <reason>" for CTest (never when one failed: a failure is not hidden by a skip).
inline void reportTmpfsSkips(bool anyFailed)
{
    if (!anyFailed && !tmpfsRefusals().empty())
        std::fprintf(stderr, "SKIPPED: %s\n", tmpfsRefusals().c_str());
}

class TmpfsMount {
public:
    TmpfsMount(const std::string& dir, std::int64_t bytes)
        : m_dir(dir)
    {
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        const std::string options = "size=" + std::to_string(bytes);
        if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) == 0)
            m_mounted = true;
        else {
            m_reason
                = "mount -t tmpfs -o " + options + " tmpfs " + dir + " was refused: " + std::strerror(errno);
            tmpfsRefusals() += (tmpfsRefusals().empty() ? "" : "; ") + m_reason;
        }
    }
    ~TmpfsMount()
    {
        if (m_mounted)
            ::umount2(m_dir.c_str(), MNT_DETACH);
    }
    TmpfsMount(const TmpfsMount&) = delete;
    TmpfsMount& operator=(const TmpfsMount&) = delete;

    bool mounted() const { return m_mounted; }
    const std::string& reason() const { return m_reason; }
    const std::string& dir() const { return m_dir; }

    // Bytes free on it now.
    std::int64_t freeBytes() const
    {
        struct statvfs s { };
        if (::statvfs(m_dir.c_str(), &s) != 0)
            return -1;
        return static_cast<std::int64_t>(s.f_bavail) * static_cast<std::int64_t>(s.f_frsize);
    }
    // Fills it up to `leaveBytes` free with a file (allocated, not sparse); false when that failed.
    bool fillLeaving(std::int64_t leaveBytes, const std::string& name = "filler")
    {
        const std::int64_t size = freeBytes() - leaveBytes;
        if (size <= 0)
            return size == 0;
        const std::string path = m_dir + "/" + name;
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            return false;
        const bool ok = ::posix_fallocate(fd, 0, static_cast<off_t>(size)) == 0;
        ::close(fd);
        return ok;
    }

private:
    std::string m_dir;
    bool m_mounted = false;
    std::string m_reason;
};

} // namespace ladder::test
