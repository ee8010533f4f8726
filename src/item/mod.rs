//! An item of a table in the change log: its identity (`key`, from its key columns) and the
//! order of its changes (`order`). Read by `snapshot` (the latest change per item) and by
//! `compact` (an hour's rows sorted by item, then by change).

pub mod key;
pub mod order;
