//! The rule core of Hourglass: Meta's customer service window (CSW), free entry point (FEP)
//! and pricing rules as pure functions.
//!
//! It owns the *decisions*: given the events of one thread (business number × contact) and
//! the instant to reason about, which windows are open, whether a free-form message may be
//! sent, and what a message of each category would cost. It must never do I/O, read the
//! clock, spawn tasks or fail for outside reasons: wire formats, storage and time all live
//! in the crates around it, which convert their data into these types by hand.
//!
//! The rules follow `shared/DESIGN.md` §2.1–2.3, which in turn follow Meta's pages
//! "Customer service windows", "Free entry point conversations" and "Pricing on the
//! WhatsApp Business Platform".

pub mod history;
pub mod instant;
pub mod pricing;
pub mod template;
pub mod window;

pub use history::{
    BusinessMessage, CustomerMessage, EntryPoint, MessageCategory, StatusKind, ThreadEvent,
    ThreadHistory,
};
pub use instant::{Instant, DAY, HOUR};
pub use pricing::{
    meta_pricing_eras, CbpRules, Charge, ChargeType, CivilDate, Era, PmpRules, PricingContext,
    PricingModel, ResolvedEras, ServicePricing,
};
pub use template::{
    lint, render, Finding, HeaderKind, ParameterFormat, RenderError, RenderParams, Rendered,
    TemplateCategory, TemplateDefinition,
};
pub use window::{
    charge_of_message, decide_free_form_send, decide_free_form_send_at, evaluate,
    free_entry_point_at, opens_window, CustomerServiceWindow, FepPhase, FreeEntryPoint,
    RuleSettings, SendDecision, WindowState, CSW_SECONDS, FEP_ELIGIBILITY_SECONDS, FEP_SECONDS,
    HISTORY_LOOKBACK_SECONDS,
};
