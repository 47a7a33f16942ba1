//! Edits of the config document (being written).
