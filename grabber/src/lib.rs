//! grabber
