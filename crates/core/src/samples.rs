//! Real-shaped Clerk webhook bodies, one per event type (from Clerk's Backend SDK types).
//! Used by `clerk-sync send-test-event` and by the tests.

macro_rules! samples {
    ($($name:literal),* $(,)?) => {
        /// Every event type that has a sample.
        pub const TYPES: &[&str] = &[$($name),*];

        /// The sample body for an event type.
        pub fn get(event_type: &str) -> Option<&'static str> {
            match event_type {
                $($name => Some(include_str!(concat!("../samples/", $name, ".json"))),)*
                _ => None,
            }
        }
    };
}

samples!(
    "user.created",
    "user.updated",
    "user.deleted",
    "organization.created",
    "organization.updated",
    "organization.deleted",
    "organizationMembership.created",
    "organizationMembership.updated",
    "organizationMembership.deleted",
    "session.created",
);
