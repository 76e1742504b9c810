//! The labs this kit knows about: their numbers, labsheets and check targets.
//!
//! The table is the one place that ties a lab number to its files. The solution regions
//! themselves live in `src/` as marker comments (see [`crate::markers`]), and the checks
//! live in `tests/labNN.rs`, so adding a lab means one row here, a labsheet, a test file
//! and a region.

/// One lab of the course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lab {
    /// The lab's number, written `NN` everywhere (`01`, `02`, …).
    pub number: u8,
    /// The labsheet's file name in `labsheet/`.
    pub sheet: &'static str,
}

/// Every lab, in teaching order.
pub const LABS: &[Lab] = &[
    Lab {
        number: 1,
        sheet: "01-first-contact.md",
    },
    Lab {
        number: 2,
        sheet: "02-inside-the-broker.md",
    },
    Lab {
        number: 3,
        sheet: "03-tcp-is-a-stream.md",
    },
    Lab {
        number: 4,
        sheet: "04-subscriptions.md",
    },
    Lab {
        number: 5,
        sheet: "05-slow-consumers.md",
    },
    Lab {
        number: 6,
        sheet: "06-measure-it.md",
    },
    Lab {
        number: 7,
        sheet: "07-topic-trees.md",
    },
    Lab {
        number: 8,
        sheet: "08-nothing-lost.md",
    },
    Lab {
        number: 9,
        sheet: "09-the-web.md",
    },
    Lab {
        number: 10,
        sheet: "10-datagrams-and-dialects.md",
    },
    Lab {
        number: 11,
        sheet: "11-many-brokers.md",
    },
    Lab {
        number: 12,
        sheet: "12-layers-on-layers.md",
    },
];

impl Lab {
    /// The lab with this number, if there is one.
    pub fn find(number: u8) -> Option<Lab> {
        LABS.iter().copied().find(|lab| lab.number == number)
    }

    /// `01`, `02`, …: how markers, test targets and messages write the number.
    pub fn code(self) -> String {
        format!("{:02}", self.number)
    }

    /// The labsheet, relative to the project root.
    pub fn sheet_path(self) -> String {
        format!("labsheet/{}", self.sheet)
    }

    /// The integration-test target holding this lab's checks (`cargo test --test lab01`).
    pub fn test_target(self) -> String {
        format!("lab{}", self.code())
    }

    /// The file of this lab's checks, relative to the project root.
    pub fn test_file(self) -> String {
        format!("tests/{}.rs", self.test_target())
    }
}

/// Reads a lab number as a student types it: `2`, `02` or `lab02`.
pub fn parse(text: &str) -> Result<Lab, String> {
    let digits = text.strip_prefix("lab").unwrap_or(text);
    let known = || {
        let codes: Vec<String> = LABS.iter().map(|lab| lab.code()).collect();
        codes.join(", ")
    };
    let number: u8 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a lab number; the labs are {}", known()))?;
    Lab::find(number).ok_or_else(|| format!("there is no lab {text}; the labs are {}", known()))
}
