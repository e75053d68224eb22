//! SQL text → query plans (on `sqlparser`), including the streaming window clauses.
//!
//! Not yet implemented; see the open SQL issue. Depends on `quiver-core` only.
