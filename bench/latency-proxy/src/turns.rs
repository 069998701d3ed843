//! Request-answer turns of one connection, from the times the proxy receives bytes from
//! either side.
//!
//! A turn is counted when bytes from the server arrive and
//! 1. the last bytes the proxy received on this connection, from either side, came from the
//!    client (the client spoke, and the server has not said anything since), and
//! 2. the server had sent nothing for at least the quiet gap (or nothing yet at all).
//!
//! With a one-way delay d each way, an answer to bytes the client sent only after it received
//! the server's previous bytes arrives at least 2d (one RTT) after those previous bytes: they
//! took d to reach the client, and the client's bytes took d to reach the server. So with the
//! quiet gap at 2d (the default), every time the client had to wait for the server before it
//! could go on is one turn, while bytes the client sends while the server is still talking
//! (window adjustments during a long output, say) are not a new turn. The server's first bytes
//! after the client's first (its SSH banner) are the first turn. Nothing here looks at what
//! the bytes say; it is the number of sequential round trips the connection paid for.

use std::time::{Duration, Instant};

/// Which side sent bytes to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// The counter of one connection; `observe` every chunk of bytes as it arrives.
#[derive(Debug)]
pub struct Turns {
    quiet: Duration,
    last: Option<Side>,
    last_server: Option<Instant>,
    turns: u64,
}

impl Turns {
    pub fn new(quiet: Duration) -> Self {
        Turns {
            quiet,
            last: None,
            last_server: None,
            turns: 0,
        }
    }

    /// Bytes from `side` arrived at `at` (times must not go backwards).
    pub fn observe(&mut self, side: Side, at: Instant) {
        if side == Side::Server {
            let quiet_before = self
                .last_server
                .is_none_or(|t| at.saturating_duration_since(t) >= self.quiet);
            if self.last == Some(Side::Client) && quiet_before {
                self.turns += 1;
            }
            self.last_server = Some(at);
        }
        self.last = Some(side);
    }

    pub fn count(&self) -> u64 {
        self.turns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(quiet_ms: u64, events: &[(Side, u64)]) -> u64 {
        let t0 = Instant::now();
        let mut turns = Turns::new(Duration::from_millis(quiet_ms));
        for &(side, ms) in events {
            turns.observe(side, t0 + Duration::from_millis(ms));
        }
        turns.count()
    }

    use Side::{Client as C, Server as S};

    #[test]
    fn request_answer_exchanges_are_one_turn_each() {
        // d = 10 ms: ask at 0, answer at 10, ask again at 20, answer at 30, ...
        let events = [(C, 0), (S, 10), (C, 20), (S, 30), (C, 40), (S, 50), (S, 51)];
        assert_eq!(run(20, &events), 3);
    }

    #[test]
    fn server_speaking_first_then_answering_is_counted_from_the_first_answer() {
        // An SSH server's banner can arrive before the client has sent anything.
        assert_eq!(run(20, &[(S, 0), (C, 1), (S, 2)]), 0);
        assert_eq!(run(20, &[(S, 0), (C, 10), (S, 20)]), 1);
    }

    #[test]
    fn client_bytes_while_the_server_streams_are_not_a_turn() {
        // A long output with the client's window adjustments in between: one turn.
        let events = [
            (C, 0),
            (S, 10),
            (S, 12),
            (C, 13),
            (S, 14),
            (C, 16),
            (S, 18),
            (S, 25),
        ];
        assert_eq!(run(20, &events), 1);
    }

    #[test]
    fn server_talking_alone_after_a_pause_is_not_a_turn() {
        // A handler's output that comes a second later, with nothing new from the client.
        assert_eq!(run(20, &[(C, 0), (S, 10), (S, 1010)]), 1);
    }

    #[test]
    fn client_bytes_with_no_answer_are_not_a_turn() {
        assert_eq!(run(20, &[(C, 0), (S, 10), (C, 30), (C, 40)]), 1);
    }

    #[test]
    fn a_zero_gap_counts_every_change_from_client_to_server() {
        let events = [(C, 0), (S, 0), (C, 0), (S, 0), (C, 1), (C, 2), (S, 2)];
        assert_eq!(run(0, &events), 3);
    }
}
