// tests for dormakaba
