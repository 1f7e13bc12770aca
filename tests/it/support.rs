//! Shared helpers.
#[allow(unused_imports)]
use zookeeper_client as zk;
