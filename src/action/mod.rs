//! Actions: what is done once the decision is taken — forward a request, splice a
//! tunnel, answer with a page. Never re-evaluates the policy.

pub mod body;
pub mod bump;
pub mod ca;
pub mod client_hello;
pub mod dial;
pub mod forward;
pub mod leaf_cache;
pub mod pool;
pub mod respond;
pub mod tunnel;
