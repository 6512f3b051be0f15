//! Services for remote instances: for each mirror of a view with `spec.services.enabled`, a
//! Service without a selector and EndpointSlices of the operator's own that route to the addresses
//! PPIO gives the instance's exposed ports, ready only while the instance runs.
//!
//! Pure, like the rest of the core: [`mod@plan`] decides from a mirror's status what its Service holds
//! and which endpoints it leaves out, [`address`] is the rule for which addresses may be routed to
//! at all, [`endpoint`] reads PPIO's endpoint text, and [`objects`] builds the Kubernetes objects.
//! [`freshness`] decides when a Service whose instance no recent listing confirmed stops routing.
//! The operator's controller writes them alongside their mirror, and turns
//! unconfirmed ones not ready.

pub mod address;
pub mod endpoint;
pub mod freshness;
pub mod objects;
pub mod plan;

pub use address::{AddressPolicy, AddressRefusal, AllowedRangeError, check_allowed_range};
pub use plan::{DesiredService, ServicePlan, ServiceTally, plan, service_name};
