"""The simulated world of the demo and the tests: the internet, its servers, the platform."""
