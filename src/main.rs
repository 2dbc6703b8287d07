//! `cairn`: the app. Everything lives in the library; this parses the flags and runs it.

use clap::Parser;

fn main() -> bevy::app::AppExit {
    cairn::run(cairn::Args::parse())
}
