#include "store/Sqlite.h"

#include <sqlite3.h>

namespace ladder::sqlite {

namespace {

std::string firstLine(const std::string& sql)
{
    // Statements are quoted in messages by their first line, trimmed, so messages stay short.
    const auto begin = sql.find_first_not_of(" \t\r\n");
    if (begin == std::string::npos)
        return {};
    const auto end = sql.find('\n', begin);
    std::string line = sql.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    constexpr std::size_t maxLength = 80;
    if (line.size() > maxLength)
        line = line.substr(0, maxLength) + "...";
    return line;
}

// "file:" URI of a path: every byte outside the unreserved set and '/' percent-encoded, so that '?', '#'
// and '%' in a file name stay part of the name.
std::string fileUri(const std::string& path)
{
    static const char* hex = "0123456789ABCDEF";
    std::string uri = "file:";
    for (const unsigned char c : path) {
        const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
            || c == '/' || c == '-' || c == '_' || c == '.' || c == '~';
        if (plain) {
            uri += static_cast<char>(c);
        } else {
            uri += '%';
            uri += hex[c >> 4];
            uri += hex[c & 0xf];
        }
    }
    return uri;
}

} // namespace

// ---------------------------------------------------------------------------------------------------------
// Connection

Connection::~Connection()
{
    close();
}

void Connection::open(const std::string& path, bool create)
{
    close();
    // As a URI (every byte of the path encoded, so the file is the same one), so that attachReadOnly()
    // may give SQLite's URI parameters to the databases it attaches.
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
    if (create)
        flags |= SQLITE_OPEN_CREATE;
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(fileUri(path).c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
        std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close_v2(db);
        throw SqliteError(message, rc & 0xff);
    }
    m_db = db;
    sqlite3_extended_result_codes(m_db, 1);
}

void Connection::openReadOnly(const std::string& path, bool immutable)
{
    close();
    const std::string uri = fileUri(path) + (immutable ? "?mode=ro&immutable=1" : "?mode=ro");
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(
        uri.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close_v2(db);
        throw SqliteError(message, rc & 0xff);
    }
    m_db = db;
    sqlite3_extended_result_codes(m_db, 1);
}

void Connection::attachReadOnly(const std::string& path, const std::string& schema, bool immutable)
{
    Statement attach(*this, "ATTACH DATABASE :uri AS " + schema);
    attach.bind(":uri", fileUri(path) + (immutable ? "?mode=ro&immutable=1" : "?mode=ro")).run();
}

void Connection::detach(const std::string& schema)
{
    exec("DETACH DATABASE " + schema);
}

void Connection::close()
{
    if (m_db) {
        // Statements are RAII objects owned by callers, so none is left; close_v2 also copes if one were.
        sqlite3_close_v2(m_db);
        m_db = nullptr;
    }
}

void Connection::check(int rc, const std::string& what) const
{
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE)
        return;
    std::string message = m_db ? sqlite3_errmsg(m_db) : sqlite3_errstr(rc);
    throw SqliteError(what.empty() ? message : what + ": " + message, rc & 0xff);
}

void Connection::exec(const std::string& sql)
{
    char* errmsg = nullptr;
    const int rc = sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &errmsg);
    if (rc != SQLITE_OK) {
        std::string message = errmsg ? errmsg : sqlite3_errstr(rc);
        sqlite3_free(errmsg);
        throw SqliteError("\"" + firstLine(sql) + "\": " + message, rc & 0xff);
    }
}

std::string Connection::queryText(const std::string& sql)
{
    Statement statement(*this, sql);
    if (!statement.step())
        return {};
    return statement.text(nullptr);
}

std::int64_t Connection::queryInt(const std::string& sql)
{
    Statement statement(*this, sql);
    if (!statement.step())
        throw SqliteError("\"" + firstLine(sql) + "\": returned no row", SQLITE_ERROR);
    return statement.int64(nullptr);
}

void Connection::setBusyTimeout(int milliseconds)
{
    check(sqlite3_busy_timeout(m_db, milliseconds), "setting the busy timeout");
}

std::int64_t Connection::lastInsertRowId() const
{
    return sqlite3_last_insert_rowid(m_db);
}

int Connection::changes() const
{
    return sqlite3_changes(m_db);
}

std::string Connection::message() const
{
    return m_db ? sqlite3_errmsg(m_db) : std::string();
}

// ---------------------------------------------------------------------------------------------------------
// Statement

Statement::Statement(Connection& connection, const std::string& sql)
    : m_connection(connection)
    , m_sql(sql)
{
    const int rc = sqlite3_prepare_v2(
        connection.handle(), sql.c_str(), static_cast<int>(sql.size() + 1), &m_stmt, nullptr);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(m_stmt);
        m_stmt = nullptr;
        connection.check(rc, "preparing \"" + firstLine(sql) + "\"");
    }
}

Statement::~Statement()
{
    sqlite3_finalize(m_stmt);
}

int Statement::parameterIndex(const char* name)
{
    const int index = sqlite3_bind_parameter_index(m_stmt, name);
    if (index == 0)
        throw SqliteError("\"" + firstLine(m_sql) + "\" has no parameter " + name, SQLITE_RANGE);
    return index;
}

Statement& Statement::bind(const char* name, std::int64_t value)
{
    m_connection.check(
        sqlite3_bind_int64(m_stmt, parameterIndex(name), value), std::string("binding ") + name);
    return *this;
}

Statement& Statement::bind(const char* name, double value)
{
    // SQLite stores NaN as NULL, which is what the store wants for a missing or undefined figure.
    m_connection.check(
        sqlite3_bind_double(m_stmt, parameterIndex(name), value), std::string("binding ") + name);
    return *this;
}

Statement& Statement::bind(const char* name, const std::string& value)
{
    m_connection.check(sqlite3_bind_text64(m_stmt, parameterIndex(name), value.data(), value.size(),
                           SQLITE_TRANSIENT, SQLITE_UTF8),
        std::string("binding ") + name);
    return *this;
}

Statement& Statement::bindNull(const char* name)
{
    m_connection.check(sqlite3_bind_null(m_stmt, parameterIndex(name)), std::string("binding ") + name);
    return *this;
}

Statement& Statement::bindTextOrNull(const char* name, const std::string& value)
{
    return value.empty() ? bindNull(name) : bind(name, value);
}

bool Statement::step()
{
    const int rc = sqlite3_step(m_stmt);
    if (rc == SQLITE_ROW)
        return true;
    if (rc == SQLITE_DONE)
        return false;
    m_connection.check(rc, "\"" + firstLine(m_sql) + "\"");
    return false;
}

void Statement::run()
{
    while (step()) { }
}

void Statement::reset()
{
    sqlite3_reset(m_stmt);
    sqlite3_clear_bindings(m_stmt);
}

void Statement::loadColumns()
{
    if (!m_columns.empty())
        return;
    const int n = sqlite3_column_count(m_stmt);
    for (int i = 0; i < n; ++i)
        m_columns.emplace(sqlite3_column_name(m_stmt, i), i);
}

int Statement::columnIndex(const char* column)
{
    if (column == nullptr)
        return 0;
    loadColumns();
    const auto it = m_columns.find(column);
    if (it == m_columns.end())
        throw SqliteError("\"" + firstLine(m_sql) + "\" has no column " + column, SQLITE_RANGE);
    return it->second;
}

bool Statement::hasColumn(const char* column)
{
    loadColumns();
    return m_columns.count(column) > 0;
}

bool Statement::isNull(const char* column)
{
    return sqlite3_column_type(m_stmt, columnIndex(column)) == SQLITE_NULL;
}

std::int64_t Statement::int64(const char* column)
{
    return sqlite3_column_int64(m_stmt, columnIndex(column));
}

double Statement::real(const char* column)
{
    return sqlite3_column_double(m_stmt, columnIndex(column));
}

std::string Statement::text(const char* column)
{
    const int index = columnIndex(column);
    const auto* data = sqlite3_column_text(m_stmt, index);
    if (data == nullptr)
        return {};
    const int size = sqlite3_column_bytes(m_stmt, index);
    return std::string(reinterpret_cast<const char*>(data), static_cast<std::size_t>(size));
}

std::optional<std::int64_t> Statement::optInt64(const char* column)
{
    if (isNull(column))
        return std::nullopt;
    return int64(column);
}

std::optional<double> Statement::optReal(const char* column)
{
    if (isNull(column))
        return std::nullopt;
    return real(column);
}

// ---------------------------------------------------------------------------------------------------------
// Transaction

Transaction::Transaction(Connection& connection)
    : m_connection(connection)
{
    m_connection.exec("BEGIN IMMEDIATE");
    m_active = true;
}

Transaction::~Transaction()
{
    if (m_active && m_connection.isOpen()) {
        // Best effort: if COMMIT failed or an exception left the scope, nothing of this transaction stays.
        sqlite3_exec(m_connection.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
}

void Transaction::commit()
{
    m_connection.exec("COMMIT");
    m_active = false;
}

} // namespace ladder::sqlite
