#pragma once

// The schema of the results store as an ordered list of migrations, private to core/store.
// Migration N takes a store from user_version N-1 to N inside one transaction. Append new migrations
// at the end; never edit one that has shipped (docs/STORE.md, "Migration policy").

#include <vector>

namespace ladder::store_detail {

struct Migration {
    int version; // the user_version after this migration
    const char* description; // for error messages: "migrating FILE to schema version 2 (description): ..."
    const char* sql; // one or more statements; run inside the migration's transaction
};

const std::vector<Migration>& migrations();

// PRAGMA application_id of a LadderBench results store: "LDBS" in ASCII.
constexpr int kApplicationId = 0x4C444253;

} // namespace ladder::store_detail
