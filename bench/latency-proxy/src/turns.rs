//! Request-answer turns of one connection, from the times the proxy receives bytes from
//! either side (before it holds them for the one-way delay d).
//!
//! A turn is counted when bytes from the server arrive at time t and
//! 1. the client sent bytes since the last turn, the first of them at c with t - c >= d: the
//!    server can have had them (they took d to reach it), so these bytes can be its answer;
//! 2. the server had sent nothing for at least the quiet gap q (default d) before t, or
//!    nothing yet at all.
//!
//! Why: when the client must wait for the server's bytes (arriving at s) before it can go on,
//! its next bytes reach the proxy at c >= s + d and their answer at t >= c + d >= s + 2d.
//! Rule 1 then holds, and rule 2 too, unless the server kept talking past s + d on its own.
//! Bytes the client sends while the server is still talking (window adjustments during a long
//! output, say) are not a new turn, as the server's next bytes come less than q after its
//! previous ones; nor is a server's own message right after an answer (OpenSSH's host-keys
//! notice after a successful login), as no client bytes came before it. The server's first
//! bytes (its SSH banner) are the first turn: the client waits for them.
//!
//! So the count is the number of times the connection waited a round trip, with no parsing of
//! what the bytes say. A server that pauses for longer than q in the middle of an output
//! while the client sends something would be counted once more; one that sends something of
//! its own more than d after an answer, before the client's next bytes, can hide a turn.

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
    delay: Duration,
    quiet: Duration,
    /// When the first client bytes since the last turn arrived.
    client_since_turn: Option<Instant>,
    last_server: Option<Instant>,
    turns: u64,
}

impl Turns {
    pub fn new(delay: Duration, quiet: Duration) -> Self {
        Turns {
            delay,
            quiet,
            client_since_turn: None,
            last_server: None,
            turns: 0,
        }
    }

    /// Bytes from `side` arrived at `at` (times must not go backwards).
    pub fn observe(&mut self, side: Side, at: Instant) {
        match side {
            Side::Client => {
                self.client_since_turn.get_or_insert(at);
            }
            Side::Server => {
                let answerable = self
                    .client_since_turn
                    .is_some_and(|c| at.saturating_duration_since(c) >= self.delay);
                let quiet_before = self
                    .last_server
                    .is_none_or(|s| at.saturating_duration_since(s) >= self.quiet);
                if answerable && quiet_before {
                    self.turns += 1;
                    self.client_since_turn = None;
                }
                self.last_server = Some(at);
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.turns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The turns of `events` (side, ms) with one-way delay `d` ms and the default gap (d).
    fn run(d: u64, events: &[(Side, u64)]) -> u64 {
        let t0 = Instant::now();
        let d = Duration::from_millis(d);
        let mut turns = Turns::new(d, d);
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
        assert_eq!(run(10, &events), 3);
    }

    #[test]
    fn the_servers_first_bytes_are_a_turn_once_they_can_answer_the_client() {
        // An SSH server's banner can come before the client's has reached it.
        assert_eq!(run(10, &[(S, 0), (C, 1), (S, 2)]), 0);
        assert_eq!(run(10, &[(C, 0), (S, 5)]), 0);
        assert_eq!(run(10, &[(C, 0), (S, 5), (S, 16)]), 1);
        assert_eq!(run(10, &[(S, 0), (C, 10), (S, 20)]), 1);
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
        assert_eq!(run(10, &events), 1);
    }

    #[test]
    fn a_servers_own_message_after_an_answer_hides_no_turn() {
        // d = 50: login accepted at 60, the server's host-keys notice at 75, the client's
        // next request at 115 and its answer at 165 (90 ms after the notice).
        assert_eq!(run(50, &[(C, 0), (S, 60), (S, 75), (C, 115), (S, 165)]), 2);
    }

    #[test]
    fn server_talking_alone_after_a_pause_is_not_a_turn() {
        // A handler's output that comes a second later, with nothing new from the client.
        assert_eq!(run(10, &[(C, 0), (S, 10), (S, 1010)]), 1);
    }

    #[test]
    fn client_bytes_with_no_answer_are_not_a_turn() {
        assert_eq!(run(10, &[(C, 0), (S, 10), (C, 30), (C, 40)]), 1);
    }

    #[test]
    fn with_no_delay_every_answer_after_client_bytes_counts() {
        let events = [
            (C, 0),
            (S, 0),
            (C, 0),
            (S, 0),
            (C, 1),
            (C, 2),
            (S, 2),
            (S, 3),
        ];
        assert_eq!(run(0, &events), 3);
    }
}
