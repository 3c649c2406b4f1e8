pub mod explore;
