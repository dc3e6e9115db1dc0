#![allow(dead_code)] // each test binary uses a different part of the support code

pub mod checkpoint;
pub mod hub_server;
