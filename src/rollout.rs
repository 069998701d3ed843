//! Rolling restarts, as Ansible's `serial` and `max_fail_percentage`: which hosts apply
//! together, and when a failed batch stops the run. Pure; `apply.rs` runs the waves.
//!
//! In: each host's lane (the deploy.yml group whose `serial:` it follows, or the command
//! line's `--serial` for all), in plan order. Out: [`Wave`]s: wave *i* holds batch *i* of
//! every lane (a lane without `serial` has one batch, so its hosts go in the first wave).
//! A wave is written, its handlers run and its `verify:` entries pass before the next
//! starts. After each wave, a lane's batch that failed beyond its `max_fail_percentage`
//! (default: every host of the batch failed, as in Ansible) stops the run.

use std::fmt;

/// One step of `serial`: a number of hosts or a percentage of the lane's hosts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Count(usize),
    Percent(f64),
}

/// `serial:` as written: one step, or a list whose last step repeats (`[1, "50%"]` makes
/// the first batch a canary).
#[derive(Debug, Clone, PartialEq)]
pub struct Serial(pub Vec<Step>);

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self
            .0
            .iter()
            .map(|s| match s {
                Step::Count(n) => n.to_string(),
                Step::Percent(p) => format!("{p}%"),
            })
            .collect();
        f.write_str(&steps.join(","))
    }
}

impl Serial {
    /// `1`, `30%`, or a comma-separated list (`1,50%`), as `--serial` takes it.
    pub fn parse(text: &str) -> Result<Serial, String> {
        let steps = text
            .split(',')
            .map(|s| Step::parse(s.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if steps.is_empty() {
            return Err("serial is empty".into());
        }
        Ok(Serial(steps))
    }

    /// `hosts` cut into batches, as ansible-core's `_get_serialized_batches`: each step's
    /// size is taken of the whole lane (a percentage rounds down, at least 1), the last step
    /// repeats, and a step of 0 takes every remaining host.
    pub fn batches(&self, hosts: &[usize]) -> Vec<Vec<usize>> {
        let total = hosts.len();
        let mut rest = hosts.iter().copied();
        let mut out = Vec::new();
        let mut step = 0;
        let mut left = total;
        while left > 0 {
            let size = match self.0.get(step).or(self.0.last()) {
                Some(Step::Count(n)) => *n,
                // Ansible's pct_to_int: rounded down, at least 1.
                Some(Step::Percent(p)) => (((p / 100.0) * total as f64) as usize).max(1),
                None => 0,
            };
            let take = if size == 0 { left } else { size.min(left) };
            out.push(rest.by_ref().take(take).collect());
            left -= take;
            if step + 1 < self.0.len() {
                step += 1;
            }
        }
        out
    }
}

impl Step {
    fn parse(text: &str) -> Result<Step, String> {
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("serial `{text}` is not a number or a percentage"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("serial `{text}` is not between 0% and 100%"));
            }
            return Ok(Step::Percent(p));
        }
        text.parse()
            .map(Step::Count)
            .map_err(|_| format!("serial `{text}` is not a number or a percentage"))
    }
}

/// The hosts that follow one `serial` (a deploy.yml group's, or `--serial`'s), or none.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// The group whose `serial:` this is (`--serial` for the command line's).
    pub name: String,
    pub serial: Option<Serial>,
    /// `max_fail_percentage`: a batch stops the run when more than this share of its hosts
    /// failed; `None`: only when all of them failed.
    pub max_fail_percentage: Option<f64>,
    /// Indexes into the plan's hosts, in plan order.
    pub hosts: Vec<usize>,
}

/// One lane's batch inside a wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub lane: usize,
    /// 1-based.
    pub number: usize,
    pub of: usize,
    pub hosts: Vec<usize>,
}

/// Hosts that apply at the same time (up to `--forks`).
#[derive(Debug, Clone, PartialEq)]
pub struct Wave {
    pub batches: Vec<Batch>,
}

impl Wave {
    pub fn hosts(&self) -> impl Iterator<Item = usize> + '_ {
        self.batches.iter().flat_map(|b| b.hosts.iter().copied())
    }
}

/// Every lane's batches, in lockstep: wave *i* is batch *i* of each lane.
pub fn waves(lanes: &[Lane]) -> Vec<Wave> {
    let per_lane: Vec<Vec<Vec<usize>>> = lanes
        .iter()
        .map(|l| match &l.serial {
            Some(s) => s.batches(&l.hosts),
            None if l.hosts.is_empty() => Vec::new(),
            None => vec![l.hosts.clone()],
        })
        .collect();
    let count = per_lane.iter().map(Vec::len).max().unwrap_or(0);
    (0..count)
        .map(|i| Wave {
            batches: per_lane
                .iter()
                .enumerate()
                .filter_map(|(lane, batches)| {
                    batches.get(i).map(|hosts| Batch {
                        lane,
                        number: i + 1,
                        of: batches.len(),
                        hosts: hosts.clone(),
                    })
                })
                .collect(),
        })
        .collect()
}

/// Whether a batch of `size` hosts with `failed` failures stops the run (Ansible: more than
/// `max_fail_percentage` percent failed; without one, all of them).
pub fn stops(size: usize, failed: usize, max_fail_percentage: Option<f64>) -> bool {
    if size == 0 || failed == 0 {
        return false;
    }
    match max_fail_percentage {
        None => failed == size,
        Some(pct) => failed as f64 / size as f64 > pct / 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(text: &str) -> Serial {
        Serial::parse(text).expect("serial")
    }

    #[test]
    fn batches_follow_ansible() {
        let hosts: Vec<usize> = (0..10).collect();
        let sizes =
            |s: &str| -> Vec<usize> { serial(s).batches(&hosts).iter().map(Vec::len).collect() };
        assert_eq!(sizes("3"), [3, 3, 3, 1]);
        assert_eq!(sizes("1,50%"), [1, 5, 4]);
        assert_eq!(sizes("30%"), [3, 3, 3, 1]);
        // 5% of 10 rounds down to 0, and is at least 1.
        assert_eq!(sizes("5%"), [1; 10]);
        assert_eq!(sizes("1,2,100%"), [1, 2, 7]);
        assert_eq!(sizes("0"), [10]);
        assert!(Serial::parse("x").is_err());
        assert!(Serial::parse("150%").is_err());
        assert_eq!(serial("1,50%").to_string(), "1,50%");
    }

    #[test]
    fn lanes_go_in_lockstep_and_a_lane_without_serial_goes_first() {
        let lanes = [
            Lane {
                name: "litellm".into(),
                serial: None,
                max_fail_percentage: None,
                hosts: vec![0],
            },
            Lane {
                name: "vllm".into(),
                serial: Some(serial("1")),
                max_fail_percentage: None,
                hosts: vec![1, 2],
            },
        ];
        let w = waves(&lanes);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].hosts().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(w[1].hosts().collect::<Vec<_>>(), [2]);
        assert_eq!((w[1].batches[0].number, w[1].batches[0].of), (2, 2));
    }

    #[test]
    fn failure_thresholds() {
        assert!(stops(1, 1, None));
        assert!(!stops(4, 3, None));
        assert!(stops(4, 3, Some(50.0)));
        assert!(!stops(4, 2, Some(50.0)), "more than 50%, not 50%");
        assert!(stops(4, 1, Some(0.0)));
        assert!(!stops(4, 0, Some(0.0)));
    }
}
