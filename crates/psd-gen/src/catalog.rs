//! The commodities, countries, attributes and units the generator draws from: real PSD names
//! and codes where they matter to the pipeline, plausible ones elsewhere.

/// (id, name). The first eight are the balance-sheet measures of the serving layer.
pub const ATTRIBUTES: [(&str, &str); 69] = [
    ("020", "Beginning Stocks"),
    ("028", "Production"),
    ("057", "Imports"),
    ("086", "Total Supply"),
    ("088", "Exports"),
    ("125", "Domestic Consumption"),
    ("176", "Ending Stocks"),
    ("178", "Total Distribution"),
    ("004", "Area Planted"),
    ("007", "Area Harvested"),
    ("184", "Yield"),
    ("029", "Arabica Production"),
    ("058", "Bean Imports"),
    ("059", "Roast & Ground Imports"),
    ("060", "Soluble Imports"),
    ("061", "Other Production"),
    ("062", "Robusta Production"),
    ("081", "Bean Exports"),
    ("082", "Rst-Grnd Exp. Bean Equiv."),
    ("083", "Soluble Exp. Bean Equiv."),
    ("130", "Rst,Ground Dom. Consum"),
    ("131", "Soluble Dom. Cons."),
    ("135", "Use"),
    ("140", "Feed Dom. Consumption"),
    ("141", "FSI Consumption"),
    ("149", "Food Use Dom. Cons."),
    ("150", "Industrial Dom. Cons."),
    ("151", "Seed Dom. Consumption"),
    ("152", "Loss"),
    ("158", "Crush"),
    ("161", "Extr. Rate, 999.9999"),
    ("170", "TY Exports"),
    ("171", "TY Imports"),
    ("172", "TY Imp. from U.S."),
    ("173", "Imports from U.S."),
    ("174", "Exports to U.S."),
    ("177", "Ending Stocks Govt."),
    ("179", "Mill Use"),
    ("180", "Loss and Residual"),
    ("181", "Exports to EU"),
    ("182", "Imports from EU"),
    ("183", "Milled Production"),
    ("185", "Rough Production"),
    ("186", "Milling Rate (.9999)"),
    ("187", "Beet Sugar Production"),
    ("188", "Cane Sugar Production"),
    ("189", "Human Dom. Consumption"),
    ("190", "Raw Imports"),
    ("191", "Refined Imp.(Raw Val)"),
    ("192", "Raw Exports"),
    ("193", "Refined Exp.(Raw Val)"),
    ("194", "Beginning Stocks Private"),
    ("195", "Cows In Milk"),
    ("196", "Fluid Use Dom. Consum."),
    ("197", "Factory Use Consum."),
    ("198", "Cow Milk Production"),
    ("199", "Other Milk Production"),
    ("200", "Total Slaughter"),
    ("201", "Cow Slaughter"),
    ("202", "Calf Slaughter"),
    ("203", "Total Cattle Beg. Stks"),
    ("204", "Dairy Cows Beg. Stocks"),
    ("205", "Beef Cows Beg. Stocks"),
    ("206", "Calf Crop"),
    ("207", "Sow Beginning Stocks"),
    ("208", "Pig Crop"),
    ("209", "Trade Year Begin"),
    ("210", "Catch For Reduction"),
    ("211", "Other Use, Losses"),
];

/// A unit: (id, description).
pub type Unit = (&'static str, &'static str);

pub const MT: Unit = ("008", "(1000 MT)");
pub const HA: Unit = ("004", "(1000 HA)");
pub const YIELD: Unit = ("026", "(MT/HA)");
pub const BAGS: Unit = ("002", "(1000 60 KG BAGS)");
pub const BALES: Unit = ("007", "(1000 480 lb. Bales)");
pub const HEAD: Unit = ("021", "(1000 HEAD)");
pub const CWE: Unit = ("022", "(1000 MT CWE)");
pub const PERCENT: Unit = ("027", "(PERCENT)");

/// Which extra attributes (by index into [`ATTRIBUTES`]) a commodity family reports, beyond the
/// eight balance measures, with the unit of each.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub unit: Unit,
    pub extras: &'static [(usize, Unit)],
}

pub const COFFEE: Profile = Profile {
    unit: BAGS,
    extras: &[
        (11, BAGS),
        (12, BAGS),
        (13, BAGS),
        (14, BAGS),
        (15, BAGS),
        (16, BAGS),
        (17, BAGS),
        (18, BAGS),
        (19, BAGS),
        (20, BAGS),
        (21, BAGS),
    ],
};
pub const COTTON: Profile = Profile {
    unit: BALES,
    extras: &[
        (9, HA),
        (10, YIELD),
        (30, BALES),
        (37, BALES),
        (38, BALES),
        (28, BALES),
    ],
};
pub const GRAIN: Profile = Profile {
    unit: MT,
    extras: &[
        (8, HA),
        (9, HA),
        (10, YIELD),
        (23, MT),
        (24, MT),
        (31, MT),
        (32, MT),
        (33, MT),
    ],
};
pub const RICE: Profile = Profile {
    unit: MT,
    extras: &[
        (9, HA),
        (10, YIELD),
        (41, MT),
        (42, MT),
        (43, PERCENT),
        (31, MT),
        (32, MT),
    ],
};
pub const OILSEED: Profile = Profile {
    unit: MT,
    extras: &[
        (8, HA),
        (9, HA),
        (10, YIELD),
        (29, MT),
        (25, MT),
        (26, MT),
        (27, MT),
        (28, MT),
        (30, PERCENT),
    ],
};
pub const PRODUCT: Profile = Profile {
    unit: MT,
    extras: &[
        (26, MT),
        (25, MT),
        (29, MT),
        (30, PERCENT),
        (34, MT),
        (35, MT),
    ],
};
pub const SUGAR: Profile = Profile {
    unit: MT,
    extras: &[
        (44, MT),
        (45, MT),
        (46, MT),
        (47, MT),
        (48, MT),
        (49, MT),
        (50, MT),
        (51, MT),
    ],
};
pub const DAIRY: Profile = Profile {
    unit: MT,
    extras: &[(52, HEAD), (53, MT), (54, MT), (55, MT), (56, MT), (25, MT)],
};
pub const MEAT: Profile = Profile {
    unit: CWE,
    extras: &[
        (57, HEAD),
        (58, HEAD),
        (59, HEAD),
        (38, CWE),
        (39, CWE),
        (35, CWE),
    ],
};
pub const LIVESTOCK: Profile = Profile {
    unit: HEAD,
    extras: &[
        (60, HEAD),
        (61, HEAD),
        (62, HEAD),
        (63, HEAD),
        (64, HEAD),
        (65, HEAD),
        (57, HEAD),
        (66, HEAD),
    ],
};
pub const FISH: Profile = Profile {
    unit: MT,
    extras: &[(67, MT), (68, MT), (35, MT)],
};

/// (code, description, profile), sorted by code as in the real file.
pub const COMMODITIES: [(&str, &str, Profile); 30] = [
    ("0011000", "Animal Numbers, Cattle", LIVESTOCK),
    ("0013000", "Animal Numbers, Swine", LIVESTOCK),
    ("0111000", "Meat, Beef and Veal", MEAT),
    ("0113000", "Meat, Swine", MEAT),
    ("0115000", "Meat, Chicken", MEAT),
    ("0224200", "Dairy, Milk, Fluid", DAIRY),
    ("0224400", "Dairy, Dry Whole Milk Powder", DAIRY),
    ("0230000", "Dairy, Butter", DAIRY),
    ("0240000", "Dairy, Cheese", DAIRY),
    ("0410000", "Wheat", GRAIN),
    ("0422110", "Rice, Milled", RICE),
    ("0430000", "Barley", GRAIN),
    ("0440000", "Corn", GRAIN),
    ("0451000", "Rye", GRAIN),
    ("0452000", "Oats", GRAIN),
    ("0459100", "Millet", GRAIN),
    ("0459200", "Sorghum", GRAIN),
    ("0612000", "Sugar, Centrifugal", SUGAR),
    ("0711100", "Coffee, Green", COFFEE),
    ("0813100", "Meal, Soybean", PRODUCT),
    ("0813200", "Meal, Peanut", PRODUCT),
    ("0813500", "Meal, Rapeseed", PRODUCT),
    ("0814200", "Meal, Fish", FISH),
    ("2222000", "Oilseed, Soybean", OILSEED),
    ("2223000", "Oilseed, Cottonseed", OILSEED),
    ("2224000", "Oilseed, Sunflowerseed", OILSEED),
    ("2226000", "Oilseed, Rapeseed", OILSEED),
    ("2631000", "Cotton", COTTON),
    ("4232000", "Oil, Soybean", PRODUCT),
    ("4243000", "Oil, Palm", PRODUCT),
];

/// Real FAS country codes and names; `NA` is the Netherlands Antilles, not a missing value.
pub const NAMED_COUNTRIES: [(&str, &str); 64] = [
    ("NA", "Netherlands Antilles"),
    ("KS", "Korea, South"),
    ("BR", "Brazil"),
    ("AE", "United Arab Emirates"),
    ("AG", "Algeria"),
    ("AR", "Argentina"),
    ("AS", "Australia"),
    ("BG", "Bangladesh"),
    ("BM", "Burma"),
    ("BO", "Belarus"),
    ("CA", "Canada"),
    ("CE", "Sri Lanka"),
    ("CH", "China"),
    ("CI", "Chile"),
    ("CM", "Cameroon"),
    ("CO", "Colombia"),
    ("CS", "Costa Rica"),
    ("CU", "Cuba"),
    ("EC", "Ecuador"),
    ("EG", "Egypt"),
    ("E4", "European Union"),
    ("ES", "El Salvador"),
    ("ET", "Ethiopia"),
    ("GH", "Ghana"),
    ("GT", "Guatemala"),
    ("HA", "Haiti"),
    ("HK", "Hong Kong"),
    ("HO", "Honduras"),
    ("ID", "Indonesia"),
    ("IN", "India"),
    ("IR", "Iran"),
    ("IV", "Cote d'Ivoire"),
    ("IZ", "Iraq"),
    ("JA", "Japan"),
    ("KE", "Kenya"),
    ("KN", "Korea, North"),
    ("KZ", "Kazakhstan"),
    ("LA", "Laos"),
    ("MA", "Madagascar"),
    ("MO", "Morocco"),
    ("MX", "Mexico"),
    ("MY", "Malaysia"),
    ("MZ", "Mozambique"),
    ("NI", "Nigeria"),
    ("NU", "Nicaragua"),
    ("NZ", "New Zealand"),
    ("PE", "Peru"),
    ("PK", "Pakistan"),
    ("PM", "Panama"),
    ("PP", "Papua New Guinea"),
    ("RP", "Philippines"),
    ("RS", "Russia"),
    ("SA", "Saudi Arabia"),
    ("SF", "South Africa"),
    ("SN", "Singapore"),
    ("TH", "Thailand"),
    ("TU", "Turkey"),
    ("TW", "Taiwan"),
    ("TZ", "Tanzania"),
    ("UG", "Uganda"),
    ("UP", "Ukraine"),
    ("US", "United States"),
    ("VE", "Venezuela"),
    ("VM", "Vietnam"),
];

/// Total countries: the named ones plus synthetic two-letter codes up to this count.
pub const COUNTRY_COUNT: usize = 150;
