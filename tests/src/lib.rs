//! Test support for maxwell: the turmoil gossip transport, the transport
//! conformance suite, and the cluster harness that runs scenarios written as
//! data (add node, heat node, cut link, heal, crash, bounce, set loss, wait,
//! assert) on a turmoil simulation of real [`maxwell_node::mesh::Mesh`]es.

pub mod conformance;
pub mod harness;
pub mod rogue;
pub mod tiered;
pub mod transport;
pub mod world;
