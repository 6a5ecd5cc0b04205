"""Pure statistics: tests, effect sizes, bootstrap, metrics, power, and the RQ1/RQ5 analysis of the tidy study; every random draw takes a seed."""
