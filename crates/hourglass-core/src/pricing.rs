//! Meta's pricing eras as data, and the charge of one message.
//!
//! Meta has changed its pricing model twice (Meta: "Pricing on the WhatsApp Business
//! Platform", "Pricing updates on the WhatsApp Business Platform"). Each era is a row: the
//! date it came into force (00:00 in the business number's time zone) and the parameters of
//! its model. The next change of parameters is a new row, not new code.

use crate::instant::Instant;

/// A calendar date with no time zone; eras start at 00:00 of such a date in the time zone
/// of the business number, which the edge resolves to an [`Instant`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CivilDate {
    pub year: i16,
    pub month: i8,
    pub day: i8,
}

/// How free-form (service) messages are priced in an era.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ServicePricing {
    /// Free and unlimited.
    Free,
    /// The first `free_per_month` of a calendar month are free (`free_tier`); the rest are
    /// charged.
    FreeMonthlyAllowance { free_per_month: u32 },
}

/// The parameters of the conversation-based model (CBP).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CbpRules {
    pub service: ServicePricing,
}

/// The parameters of the per-message model (PMP).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PmpRules {
    /// Utility templates delivered while the customer service window is open are free.
    pub utility_free_in_csw: bool,
    pub service: ServicePricing,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PricingModel {
    /// Charged per 24-hour billing conversation of a category.
    ConversationBased(CbpRules),
    /// Templates charged per delivered message.
    PerMessage(PmpRules),
}

/// One row of the pricing table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Era {
    /// The name the API reports in `pricing_era`.
    pub name: &'static str,
    pub starts_on: CivilDate,
    pub model: PricingModel,
}

/// Meta's eras, oldest first (DESIGN.md §2.3).
pub fn meta_pricing_eras() -> &'static [Era] {
    const ERAS: [Era; 4] = [
        // Before 2024-11-01 the first 1,000 service conversations of a month were free.
        Era {
            name: "CBP",
            starts_on: CivilDate {
                year: 1970,
                month: 1,
                day: 1,
            },
            model: PricingModel::ConversationBased(CbpRules {
                service: ServicePricing::FreeMonthlyAllowance {
                    free_per_month: 1_000,
                },
            }),
        },
        // "Service conversations are free for all businesses from November 1, 2024."
        Era {
            name: "CBP",
            starts_on: CivilDate {
                year: 2024,
                month: 11,
                day: 1,
            },
            model: PricingModel::ConversationBased(CbpRules {
                service: ServicePricing::Free,
            }),
        },
        Era {
            name: "PMP_2025",
            starts_on: CivilDate {
                year: 2025,
                month: 7,
                day: 1,
            },
            model: PricingModel::PerMessage(PmpRules {
                utility_free_in_csw: true,
                service: ServicePricing::Free,
            }),
        },
        Era {
            name: "PMP_2026",
            starts_on: CivilDate {
                year: 2026,
                month: 10,
                day: 1,
            },
            model: PricingModel::PerMessage(PmpRules {
                utility_free_in_csw: false,
                service: ServicePricing::FreeMonthlyAllowance {
                    free_per_month: 1_000,
                },
            }),
        },
    ];
    &ERAS
}

/// The eras with their start dates resolved to instants for one business number's time
/// zone. Built by the edge, which owns time zones; the core only compares instants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedEras {
    /// `(start, era)`, oldest first. The first era also covers everything before its start.
    eras: Vec<(Instant, Era)>,
}

impl ResolvedEras {
    /// Resolves `eras` with `midnight_of`, which gives 00:00 of a date in the number's
    /// time zone.
    pub fn resolve(eras: &[Era], midnight_of: impl Fn(CivilDate) -> Instant) -> Self {
        let mut resolved: Vec<(Instant, Era)> = eras
            .iter()
            .map(|era| (midnight_of(era.starts_on), *era))
            .collect();
        resolved.sort_by_key(|(start, _)| *start);
        assert!(
            !resolved.is_empty(),
            "a pricing table needs at least one era"
        );
        ResolvedEras { eras: resolved }
    }

    /// Meta's eras with boundaries at 00:00 UTC.
    pub fn meta_utc() -> Self {
        Self::resolve(meta_pricing_eras(), utc_midnight)
    }

    /// The era in force at `at`.
    pub fn era_at(&self, at: Instant) -> &Era {
        let index = self.eras.partition_point(|(start, _)| *start <= at);
        &self.eras[index.saturating_sub(1)].1
    }
}

/// 00:00 UTC of a civil date (Howard Hinnant's days-from-civil).
pub fn utc_midnight(date: CivilDate) -> Instant {
    let (y, m, d) = (date.year as i64, date.month as i64, date.day as i64);
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Instant::from_unix_seconds(days * crate::instant::DAY)
}

/// What the pricing rules need beyond the thread's own history.
#[derive(Copy, Clone, Debug)]
pub struct PricingContext<'a> {
    pub eras: &'a ResolvedEras,
    /// Free-form messages delivered from this business number in the calendar month (in
    /// its time zone) that contains the instant asked about, before that instant. The
    /// edge counts them; the core only compares the count with the era's allowance.
    pub service_messages_this_month: u32,
}

/// Why a message costs what it costs, in Meta's words where Meta has one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChargeType {
    /// Charged at the rate card's price.
    Regular,
    /// Free because the customer service window is open (Meta's `free_customer_service`).
    FreeCustomerService,
    /// Free because a free entry point window is open (Meta's `free_entry_point`).
    FreeEntryPoint,
    /// Free as one of the month's free service messages (Hourglass's word).
    FreeTier,
    /// Under conversation-based pricing, free because a billing conversation of its
    /// category is already open and paid for (Hourglass's word).
    InOpenConversation,
}

impl ChargeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeType::Regular => "regular",
            ChargeType::FreeCustomerService => "free_customer_service",
            ChargeType::FreeEntryPoint => "free_entry_point",
            ChargeType::FreeTier => "free_tier",
            ChargeType::InOpenConversation => "in_open_conversation",
        }
    }
}

/// The decision for one message: billable or not, and why.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Charge {
    pub billable: bool,
    pub kind: ChargeType,
}

impl Charge {
    pub const REGULAR: Charge = Charge {
        billable: true,
        kind: ChargeType::Regular,
    };

    pub const fn free(kind: ChargeType) -> Charge {
        Charge {
            billable: false,
            kind,
        }
    }
}

/// The charge of a service message under `pricing`, given the month's count so far.
pub(crate) fn service_charge(pricing: ServicePricing, this_month: u32) -> Charge {
    match pricing {
        ServicePricing::Free => Charge::free(ChargeType::FreeCustomerService),
        ServicePricing::FreeMonthlyAllowance { free_per_month } if this_month < free_per_month => {
            Charge::free(ChargeType::FreeTier)
        }
        ServicePricing::FreeMonthlyAllowance { .. } => Charge::REGULAR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_midnight_matches_known_unix_times() {
        let at = |year, month, day| utc_midnight(CivilDate { year, month, day }).unix_seconds();
        assert_eq!(at(1970, 1, 1), 0);
        assert_eq!(at(2025, 7, 1), 1_751_328_000);
        assert_eq!(at(2026, 10, 1), 1_790_812_800);
        assert_eq!(at(2024, 2, 29), 1_709_164_800);
    }

    #[test]
    fn era_boundaries_fall_at_midnight_utc_by_default() {
        let eras = ResolvedEras::meta_utc();
        let pmp2026 = Instant::from_unix_seconds(1_790_812_800);
        assert_eq!(eras.era_at(pmp2026).name, "PMP_2026");
        assert_eq!(eras.era_at(pmp2026.plus_seconds(-1)).name, "PMP_2025");
        assert_eq!(
            eras.era_at(Instant::from_unix_seconds(1_751_328_000)).name,
            "PMP_2025"
        );
        assert_eq!(
            eras.era_at(Instant::from_unix_seconds(1_751_327_999)).name,
            "CBP"
        );
        assert_eq!(eras.era_at(Instant::from_unix_seconds(-5)).name, "CBP");
    }

    #[test]
    fn era_boundaries_follow_the_numbers_time_zone() {
        // A number in UTC-3 (São Paulo has no DST since 2019): 00:00 local is 03:00 UTC.
        let eras = ResolvedEras::resolve(meta_pricing_eras(), |d| {
            utc_midnight(d).plus_seconds(3 * crate::instant::HOUR)
        });
        let utc_midnight_oct1 = Instant::from_unix_seconds(1_790_812_800);
        assert_eq!(eras.era_at(utc_midnight_oct1).name, "PMP_2025");
        assert_eq!(
            eras.era_at(utc_midnight_oct1.plus_seconds(3 * 3600 - 1))
                .name,
            "PMP_2025"
        );
        assert_eq!(
            eras.era_at(utc_midnight_oct1.plus_seconds(3 * 3600)).name,
            "PMP_2026"
        );
    }
}
