-- Timed by the client inside BEGIN ... ROLLBACK; $1 is the first id.
DELETE FROM bench.@TABLE@ WHERE id BETWEEN $1 AND $1 + 99999
