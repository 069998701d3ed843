//! Local transport: the controller itself, with an optional root directory in front of every path.
