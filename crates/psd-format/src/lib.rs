//! The USDA PSD bulk CSV format: its 12 columns, the balance-sheet attributes, and a streaming
//! validator that checks a CSV of any size in constant memory.

mod validate;

pub use validate::{CsvSummary, CsvValidator, RECORD_BYTES_MAX, ValidationError};

/// The header of the PSD bulk CSV, exactly.
pub const COLUMNS: [&str; 12] = [
    "Commodity_Code",
    "Commodity_Description",
    "Country_Code",
    "Country_Name",
    "Market_Year",
    "Calendar_Year",
    "Month",
    "Attribute_ID",
    "Attribute_Description",
    "Unit_ID",
    "Unit_Description",
    "Value",
];

/// A balance-sheet measure: the PSD attribute it comes from and its serving column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    pub attribute_id: &'static str,
    pub attribute: &'static str,
    pub column: &'static str,
}

/// The eight measures of `serving.commodity_balance` (docs/INTERFACES.md section 5).
pub const BALANCE_MEASURES: [Measure; 8] = [
    Measure {
        attribute_id: "020",
        attribute: "Beginning Stocks",
        column: "beginning_stocks",
    },
    Measure {
        attribute_id: "028",
        attribute: "Production",
        column: "production",
    },
    Measure {
        attribute_id: "057",
        attribute: "Imports",
        column: "imports",
    },
    Measure {
        attribute_id: "086",
        attribute: "Total Supply",
        column: "total_supply",
    },
    Measure {
        attribute_id: "088",
        attribute: "Exports",
        column: "exports",
    },
    Measure {
        attribute_id: "125",
        attribute: "Domestic Consumption",
        column: "domestic_consumption",
    },
    Measure {
        attribute_id: "176",
        attribute: "Ending Stocks",
        column: "ending_stocks",
    },
    Measure {
        attribute_id: "178",
        attribute: "Total Distribution",
        column: "total_distribution",
    },
];
