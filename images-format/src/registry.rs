//! Lookup of message descriptors by CRIU's message names.

use std::collections::HashMap;
use std::sync::OnceLock;

use protobuf::reflect::{FileDescriptor, MessageDescriptor};

include!(concat!(env!("OUT_DIR"), "/registry.rs"));

fn index() -> &'static HashMap<String, MessageDescriptor> {
    static INDEX: OnceLock<HashMap<String, MessageDescriptor>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut map = HashMap::new();
        for fd in file_descriptors() {
            collect(&fd, &mut map);
        }
        map
    })
}

fn collect(fd: &FileDescriptor, map: &mut HashMap<String, MessageDescriptor>) {
    fn walk(md: MessageDescriptor, map: &mut HashMap<String, MessageDescriptor>) {
        for nested in md.nested_messages() {
            walk(nested, map);
        }
        map.insert(md.full_name().to_string(), md);
    }
    for md in fd.messages() {
        walk(md, map);
    }
}

/// The descriptor of the message CRIU calls `name` (e.g. `core_entry`).
pub fn message(name: &str) -> Option<MessageDescriptor> {
    index().get(name).cloned()
}

/// Every message descriptor, in no particular order.
pub fn all_messages() -> impl Iterator<Item = &'static MessageDescriptor> {
    index().values()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_declares_fields_in_number_order() {
        // protobuf-c and Python write fields by number; rust-protobuf writes them
        // in declaration order, so declaration order must be number order for
        // re-encoded images to be byte-identical.
        for md in all_messages() {
            let numbers: Vec<i32> = md.fields().map(|f| f.number()).collect();
            let mut sorted = numbers.clone();
            sorted.sort();
            assert_eq!(
                numbers,
                sorted,
                "{} declares fields out of order",
                md.full_name()
            );
        }
    }

    #[test]
    fn criu_opts_message_registered() {
        assert!(message("CRIU_Opts").is_some());
    }
}
