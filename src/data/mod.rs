//! Data formats, beneath every other layer: plain functions over bytes and text, with
//! no ZooKeeper, no cache and no kernel.
//!
//! * [`properties`] — znode data ⇄ the JSON object of `properties.json` (zc.zk's rules);
//! * [`jsontext`] — JSON as written: byte spans to merge, bounded re-indentation;
//! * [`document`] — the JSON a program writes, across many `write` calls;
//! * [`names`] — which names may be created (registrations are `HOST:PORT`);
//! * [`treefmt`] — zc.zk's tree text format, parsed and printed;
//! * [`literal`] — its values: Python literals parsed (never evaluated) and JSON.

pub mod document;
pub mod jsontext;
pub mod links;
pub mod literal;
pub mod names;
pub mod properties;
pub mod treefmt;
