#pragma once

#include <chrono>
#include <iostream>
#include <string>

#include <unistd.h>

namespace ladder::cli {

// A progress message on stderr: on a terminal one line redrawn in place; elsewhere (a log file, a pipe, a
// batch job) a plain line at most every few seconds, so that a log is not flooded and never holds '\r'.
class ProgressLine {
public:
    explicit ProgressLine(bool enabled, double plainEverySeconds = 5.0)
        : m_enabled(enabled)
        , m_terminal(::isatty(STDERR_FILENO) == 1)
        , m_every(plainEverySeconds)
    {
    }
    void show(const std::string& line)
    {
        if (!m_enabled)
            return;
        const auto now = std::chrono::steady_clock::now();
        if (m_terminal) {
            std::cerr << "\r" << line << "\x1b[K" << std::flush;
            m_open = true;
        } else if (!m_printed || std::chrono::duration<double>(now - m_last).count() >= m_every) {
            std::cerr << line << std::endl;
            m_printed = true;
            m_last = now;
        }
    }
    // Ends the redrawn line (a terminal only): what follows starts on a clean line.
    void clear()
    {
        if (m_open)
            std::cerr << "\r\x1b[K" << std::flush;
        m_open = false;
    }
    ~ProgressLine() { clear(); }

private:
    bool m_enabled;
    bool m_terminal;
    double m_every;
    bool m_open = false;
    bool m_printed = false;
    std::chrono::steady_clock::time_point m_last {};
};

} // namespace ladder::cli
