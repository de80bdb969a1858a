//! One module per check kind; each is a small state machine over one connection.
