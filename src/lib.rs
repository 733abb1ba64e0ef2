//! voxmail: a centralized voicemail service for PBX clusters.
#![forbid(unsafe_code)]

pub mod app;
pub mod audio;
pub mod blob;
pub mod cli;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod imap;
pub mod mail;
pub mod service;
pub mod store;
