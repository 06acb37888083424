pub mod programs;
