#pragma once

// A small RAII layer over the SQLite C API, private to core/store: only .cpp files of the store include
// it (sqlite3.h stays out of every public header). Every failure throws SqliteError with the SQLite
// message and the statement it came from; ResultsStore turns those into its bool + error-string API.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>

struct sqlite3;
struct sqlite3_stmt;

namespace ladder::sqlite {

class SqliteError : public std::runtime_error {
public:
    SqliteError(const std::string& message, int code)
        : std::runtime_error(message)
        , m_code(code)
    {
    }
    // The primary SQLite result code (SQLITE_BUSY, SQLITE_NOTADB, ...).
    int code() const { return m_code; }

private:
    int m_code;
};

// One connection. Not shared across threads (opened with SQLITE_OPEN_NOMUTEX).
class Connection {
public:
    Connection() = default;
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Opens (and creates when `create`) the file. Throws SqliteError.
    void open(const std::string& path, bool create);
    // Opens the file for reading only (SQLITE_OPEN_READONLY). `immutable` adds the URI parameter
    // immutable=1: SQLite then reads the main file as it is, without the -wal and -shm files and without
    // locks, which is how a WAL store in a folder that cannot be written is read. Throws SqliteError.
    void openReadOnly(const std::string& path, bool immutable);
    void close();
    bool isOpen() const { return m_db != nullptr; }
    // ATTACH DATABASE of another file, read only, as `schema` (a plain SQL name the caller chooses):
    // `immutable` as in openReadOnly(). Not inside a transaction. Throws SqliteError.
    void attachReadOnly(const std::string& path, const std::string& schema, bool immutable);
    void detach(const std::string& schema);

    // Runs one or more statements that return no rows of interest. Throws SqliteError naming `what`.
    void exec(const std::string& sql);
    // Runs a statement whose first column of the first row is returned as text (PRAGMA queries).
    std::string queryText(const std::string& sql);
    std::int64_t queryInt(const std::string& sql);

    void setBusyTimeout(int milliseconds);
    std::int64_t lastInsertRowId() const;
    int changes() const;
    // sqlite3_errmsg of the connection.
    std::string message() const;
    sqlite3* handle() const { return m_db; }

    // Throws SqliteError("<what>: <sqlite message>") when rc is an error code.
    void check(int rc, const std::string& what) const;

private:
    sqlite3* m_db = nullptr;
};

// A prepared statement with named parameters (":name"). Throws SqliteError on any failure.
class Statement {
public:
    Statement(Connection& connection, const std::string& sql);
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& bind(const char* name, std::int64_t value);
    Statement& bind(const char* name, int value) { return bind(name, static_cast<std::int64_t>(value)); }
    Statement& bind(const char* name, double value);
    Statement& bind(const char* name, const std::string& value);
    Statement& bind(const char* name, const char* value) { return bind(name, std::string(value)); }
    Statement& bindNull(const char* name);
    template <typename T> Statement& bind(const char* name, const std::optional<T>& value)
    {
        return value ? bind(name, *value) : bindNull(name);
    }
    // Binds NULL for an empty string.
    Statement& bindTextOrNull(const char* name, const std::string& value);

    // Advances; true when a row is available, false when done.
    bool step();
    // Runs a statement that returns no rows.
    void run();
    // Clears bindings and rewinds, for reuse with new parameters.
    void reset();

    // Whether the result has this column (a store opened read-only may predate a column).
    bool hasColumn(const char* column);
    bool isNull(const char* column);
    std::int64_t int64(const char* column);
    double real(const char* column);
    std::string text(const char* column);
    std::optional<std::int64_t> optInt64(const char* column);
    std::optional<double> optReal(const char* column);

private:
    int parameterIndex(const char* name);
    int columnIndex(const char* column);
    void loadColumns();

    Connection& m_connection;
    sqlite3_stmt* m_stmt = nullptr;
    std::string m_sql;
    std::unordered_map<std::string, int> m_columns;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back in the destructor unless commit() succeeded. IMMEDIATE takes
// the write lock up front, so a write transaction never has to upgrade a read lock (which in WAL mode
// would fail with SQLITE_BUSY without waiting for the busy timeout).
class Transaction {
public:
    explicit Transaction(Connection& connection);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    void commit();

private:
    Connection& m_connection;
    bool m_active = false;
};

} // namespace ladder::sqlite
