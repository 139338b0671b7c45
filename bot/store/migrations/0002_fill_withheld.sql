-- A fill's commission taken out of the traded asset (base units): the order filled size + withheld.
ALTER TABLE fills ADD COLUMN withheld TEXT NOT NULL DEFAULT '0';
