//! Actions: what is done once the decision is taken — forward a request, splice a
//! tunnel, answer with a page. Never re-evaluates the policy.

pub mod block_page;
pub mod bump;
pub mod ca;
pub mod ca_cli;
pub mod client_hello;
pub mod dial;
pub mod forward;
pub mod pool;
pub mod tunnel;
