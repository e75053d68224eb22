//! Deterministic generators for benchmark data: trading records and 1BRC measurements.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
pub use quiver_core::rng::SplitMix64;
use quiver_core::{Decimal, Record, Timestamp};

/// The official 1BRC station list (413 stations) with each station's mean temperature (°C), as
/// the challenge's own generator uses it (from Wikipedia's list of cities by average
/// temperature).
pub const STATIONS: &[(&str, f64)] = &[
    ("Abha", 18.0),
    ("Abidjan", 26.0),
    ("Abéché", 29.4),
    ("Accra", 26.4),
    ("Addis Ababa", 16.0),
    ("Adelaide", 17.3),
    ("Aden", 29.1),
    ("Ahvaz", 25.4),
    ("Albuquerque", 14.0),
    ("Alexandra", 11.0),
    ("Alexandria", 20.0),
    ("Algiers", 18.2),
    ("Alice Springs", 21.0),
    ("Almaty", 10.0),
    ("Amsterdam", 10.2),
    ("Anadyr", -6.9),
    ("Anchorage", 2.8),
    ("Andorra la Vella", 9.8),
    ("Ankara", 12.0),
    ("Antananarivo", 17.9),
    ("Antsiranana", 25.2),
    ("Arkhangelsk", 1.3),
    ("Ashgabat", 17.1),
    ("Asmara", 15.6),
    ("Assab", 30.5),
    ("Astana", 3.5),
    ("Athens", 19.2),
    ("Atlanta", 17.0),
    ("Auckland", 15.2),
    ("Austin", 20.7),
    ("Baghdad", 22.77),
    ("Baguio", 19.5),
    ("Baku", 15.1),
    ("Baltimore", 13.1),
    ("Bamako", 27.8),
    ("Bangkok", 28.6),
    ("Bangui", 26.0),
    ("Banjul", 26.0),
    ("Barcelona", 18.2),
    ("Bata", 25.1),
    ("Batumi", 14.0),
    ("Beijing", 12.9),
    ("Beirut", 20.9),
    ("Belgrade", 12.5),
    ("Belize City", 26.7),
    ("Benghazi", 19.9),
    ("Bergen", 7.7),
    ("Berlin", 10.3),
    ("Bilbao", 14.7),
    ("Birao", 26.5),
    ("Bishkek", 11.3),
    ("Bissau", 27.0),
    ("Blantyre", 22.2),
    ("Bloemfontein", 15.6),
    ("Boise", 11.4),
    ("Bordeaux", 14.2),
    ("Bosaso", 30.0),
    ("Boston", 10.9),
    ("Bouaké", 26.0),
    ("Bratislava", 10.5),
    ("Brazzaville", 25.0),
    ("Bridgetown", 27.0),
    ("Brisbane", 21.4),
    ("Brussels", 10.5),
    ("Bucharest", 10.8),
    ("Budapest", 11.3),
    ("Bujumbura", 23.8),
    ("Bulawayo", 18.9),
    ("Burnie", 13.1),
    ("Busan", 15.0),
    ("Cabo San Lucas", 23.9),
    ("Cairns", 25.0),
    ("Cairo", 21.4),
    ("Calgary", 4.4),
    ("Canberra", 13.1),
    ("Cape Town", 16.2),
    ("Changsha", 17.4),
    ("Charlotte", 16.1),
    ("Chiang Mai", 25.8),
    ("Chicago", 9.8),
    ("Chihuahua", 18.6),
    ("Chișinău", 10.2),
    ("Chittagong", 25.9),
    ("Chongqing", 18.6),
    ("Christchurch", 12.2),
    ("City of San Marino", 11.8),
    ("Colombo", 27.4),
    ("Columbus", 11.7),
    ("Conakry", 26.4),
    ("Copenhagen", 9.1),
    ("Cotonou", 27.2),
    ("Cracow", 9.3),
    ("Da Lat", 17.9),
    ("Da Nang", 25.8),
    ("Dakar", 24.0),
    ("Dallas", 19.0),
    ("Damascus", 17.0),
    ("Dampier", 26.4),
    ("Dar es Salaam", 25.8),
    ("Darwin", 27.6),
    ("Denpasar", 23.7),
    ("Denver", 10.4),
    ("Detroit", 10.0),
    ("Dhaka", 25.9),
    ("Dikson", -11.1),
    ("Dili", 26.6),
    ("Djibouti", 29.9),
    ("Dodoma", 22.7),
    ("Dolisie", 24.0),
    ("Douala", 26.7),
    ("Dubai", 26.9),
    ("Dublin", 9.8),
    ("Dunedin", 11.1),
    ("Durban", 20.6),
    ("Dushanbe", 14.7),
    ("Edinburgh", 9.3),
    ("Edmonton", 4.2),
    ("El Paso", 18.1),
    ("Entebbe", 21.0),
    ("Erbil", 19.5),
    ("Erzurum", 5.1),
    ("Fairbanks", -2.3),
    ("Fianarantsoa", 17.9),
    ("Flores,  Petén", 26.4),
    ("Frankfurt", 10.6),
    ("Fresno", 17.9),
    ("Fukuoka", 17.0),
    ("Gaborone", 21.0),
    ("Gabès", 19.5),
    ("Gagnoa", 26.0),
    ("Gangtok", 15.2),
    ("Garissa", 29.3),
    ("Garoua", 28.3),
    ("George Town", 27.9),
    ("Ghanzi", 21.4),
    ("Gjoa Haven", -14.4),
    ("Guadalajara", 20.9),
    ("Guangzhou", 22.4),
    ("Guatemala City", 20.4),
    ("Halifax", 7.5),
    ("Hamburg", 9.7),
    ("Hamilton", 13.8),
    ("Hanga Roa", 20.5),
    ("Hanoi", 23.6),
    ("Harare", 18.4),
    ("Harbin", 5.0),
    ("Hargeisa", 21.7),
    ("Hat Yai", 27.0),
    ("Havana", 25.2),
    ("Helsinki", 5.9),
    ("Heraklion", 18.9),
    ("Hiroshima", 16.3),
    ("Ho Chi Minh City", 27.4),
    ("Hobart", 12.7),
    ("Hong Kong", 23.3),
    ("Honiara", 26.5),
    ("Honolulu", 25.4),
    ("Houston", 20.8),
    ("Ifrane", 11.4),
    ("Indianapolis", 11.8),
    ("Iqaluit", -9.3),
    ("Irkutsk", 1.0),
    ("Istanbul", 13.9),
    ("İzmir", 17.9),
    ("Jacksonville", 20.3),
    ("Jakarta", 26.7),
    ("Jayapura", 27.0),
    ("Jerusalem", 18.3),
    ("Johannesburg", 15.5),
    ("Jos", 22.8),
    ("Juba", 27.8),
    ("Kabul", 12.1),
    ("Kampala", 20.0),
    ("Kandi", 27.7),
    ("Kankan", 26.5),
    ("Kano", 26.4),
    ("Kansas City", 12.5),
    ("Karachi", 26.0),
    ("Karonga", 24.4),
    ("Kathmandu", 18.3),
    ("Khartoum", 29.9),
    ("Kingston", 27.4),
    ("Kinshasa", 25.3),
    ("Kolkata", 26.7),
    ("Kuala Lumpur", 27.3),
    ("Kumasi", 26.0),
    ("Kunming", 15.7),
    ("Kuopio", 3.4),
    ("Kuwait City", 25.7),
    ("Kyiv", 8.4),
    ("Kyoto", 15.8),
    ("La Ceiba", 26.2),
    ("La Paz", 23.7),
    ("Lagos", 26.8),
    ("Lahore", 24.3),
    ("Lake Havasu City", 23.7),
    ("Lake Tekapo", 8.7),
    ("Las Palmas de Gran Canaria", 21.2),
    ("Las Vegas", 20.3),
    ("Launceston", 13.1),
    ("Lhasa", 7.6),
    ("Libreville", 25.9),
    ("Lisbon", 17.5),
    ("Livingstone", 21.8),
    ("Ljubljana", 10.9),
    ("Lodwar", 29.3),
    ("Lomé", 26.9),
    ("London", 11.3),
    ("Los Angeles", 18.6),
    ("Louisville", 13.9),
    ("Luanda", 25.8),
    ("Lubumbashi", 20.8),
    ("Lusaka", 19.9),
    ("Luxembourg City", 9.3),
    ("Lviv", 7.8),
    ("Lyon", 12.5),
    ("Madrid", 15.0),
    ("Mahajanga", 26.3),
    ("Makassar", 26.7),
    ("Makurdi", 26.0),
    ("Malabo", 26.3),
    ("Malé", 28.0),
    ("Managua", 27.3),
    ("Manama", 26.5),
    ("Mandalay", 28.0),
    ("Mango", 28.1),
    ("Manila", 28.4),
    ("Maputo", 22.8),
    ("Marrakesh", 19.6),
    ("Marseille", 15.8),
    ("Maun", 22.4),
    ("Medan", 26.5),
    ("Mek'ele", 22.7),
    ("Melbourne", 15.1),
    ("Memphis", 17.2),
    ("Mexicali", 23.1),
    ("Mexico City", 17.5),
    ("Miami", 24.9),
    ("Milan", 13.0),
    ("Milwaukee", 8.9),
    ("Minneapolis", 7.8),
    ("Minsk", 6.7),
    ("Mogadishu", 27.1),
    ("Mombasa", 26.3),
    ("Monaco", 16.4),
    ("Moncton", 6.1),
    ("Monterrey", 22.3),
    ("Montreal", 6.8),
    ("Moscow", 5.8),
    ("Mumbai", 27.1),
    ("Murmansk", 0.6),
    ("Muscat", 28.0),
    ("Mzuzu", 17.7),
    ("N'Djamena", 28.3),
    ("Naha", 23.1),
    ("Nairobi", 17.8),
    ("Nakhon Ratchasima", 27.3),
    ("Napier", 14.6),
    ("Napoli", 15.9),
    ("Nashville", 15.4),
    ("Nassau", 24.6),
    ("Ndola", 20.3),
    ("New Delhi", 25.0),
    ("New Orleans", 20.7),
    ("New York City", 12.9),
    ("Ngaoundéré", 22.0),
    ("Niamey", 29.3),
    ("Nicosia", 19.7),
    ("Niigata", 13.9),
    ("Nouadhibou", 21.3),
    ("Nouakchott", 25.7),
    ("Novosibirsk", 1.7),
    ("Nuuk", -1.4),
    ("Odesa", 10.7),
    ("Odienné", 26.0),
    ("Oklahoma City", 15.9),
    ("Omaha", 10.6),
    ("Oranjestad", 28.1),
    ("Oslo", 5.7),
    ("Ottawa", 6.6),
    ("Ouagadougou", 28.3),
    ("Ouahigouya", 28.6),
    ("Ouarzazate", 18.9),
    ("Oulu", 2.7),
    ("Palembang", 27.3),
    ("Palermo", 18.5),
    ("Palm Springs", 24.5),
    ("Palmerston North", 13.2),
    ("Panama City", 28.0),
    ("Parakou", 26.8),
    ("Paris", 12.3),
    ("Perth", 18.7),
    ("Petropavlovsk-Kamchatsky", 1.9),
    ("Philadelphia", 13.2),
    ("Phnom Penh", 28.3),
    ("Phoenix", 23.9),
    ("Pittsburgh", 10.8),
    ("Podgorica", 15.3),
    ("Pointe-Noire", 26.1),
    ("Pontianak", 27.7),
    ("Port Moresby", 26.9),
    ("Port Sudan", 28.4),
    ("Port Vila", 24.3),
    ("Port-Gentil", 26.0),
    ("Portland (OR)", 12.4),
    ("Porto", 15.7),
    ("Prague", 8.4),
    ("Praia", 24.4),
    ("Pretoria", 18.2),
    ("Pyongyang", 10.8),
    ("Rabat", 17.2),
    ("Rangpur", 24.4),
    ("Reggane", 28.3),
    ("Reykjavík", 4.3),
    ("Riga", 6.2),
    ("Riyadh", 26.0),
    ("Rome", 15.2),
    ("Roseau", 26.2),
    ("Rostov-on-Don", 9.9),
    ("Sacramento", 16.3),
    ("Saint Petersburg", 5.8),
    ("Saint-Pierre", 5.7),
    ("Salt Lake City", 11.6),
    ("San Antonio", 20.8),
    ("San Diego", 17.8),
    ("San Francisco", 14.6),
    ("San Jose", 16.4),
    ("San José", 22.6),
    ("San Juan", 27.2),
    ("San Salvador", 23.1),
    ("Sana'a", 20.0),
    ("Santo Domingo", 25.9),
    ("Sapporo", 8.9),
    ("Sarajevo", 10.1),
    ("Saskatoon", 3.3),
    ("Seattle", 11.3),
    ("Ségou", 28.0),
    ("Seoul", 12.5),
    ("Seville", 19.2),
    ("Shanghai", 16.7),
    ("Singapore", 27.0),
    ("Skopje", 12.4),
    ("Sochi", 14.2),
    ("Sofia", 10.6),
    ("Sokoto", 28.0),
    ("Split", 16.1),
    ("St. John's", 5.0),
    ("St. Louis", 13.9),
    ("Stockholm", 6.6),
    ("Surabaya", 27.1),
    ("Suva", 25.6),
    ("Suwałki", 7.2),
    ("Sydney", 17.7),
    ("Tabora", 23.0),
    ("Tabriz", 12.6),
    ("Taipei", 23.0),
    ("Tallinn", 6.4),
    ("Tamale", 27.9),
    ("Tamanrasset", 21.7),
    ("Tampa", 22.9),
    ("Tashkent", 14.8),
    ("Tauranga", 14.8),
    ("Tbilisi", 12.9),
    ("Tegucigalpa", 21.7),
    ("Tehran", 17.0),
    ("Tel Aviv", 20.0),
    ("Thessaloniki", 16.0),
    ("Thiès", 24.0),
    ("Tijuana", 17.8),
    ("Timbuktu", 28.0),
    ("Tirana", 15.2),
    ("Toamasina", 23.4),
    ("Tokyo", 15.4),
    ("Toliara", 24.1),
    ("Toluca", 12.4),
    ("Toronto", 9.4),
    ("Tripoli", 20.0),
    ("Tromsø", 2.9),
    ("Tucson", 20.9),
    ("Tunis", 18.4),
    ("Ulaanbaatar", -0.4),
    ("Upington", 20.4),
    ("Ürümqi", 7.4),
    ("Vaduz", 10.1),
    ("Valencia", 18.3),
    ("Valletta", 18.8),
    ("Vancouver", 10.4),
    ("Veracruz", 25.4),
    ("Vienna", 10.4),
    ("Vientiane", 25.9),
    ("Villahermosa", 27.1),
    ("Vilnius", 6.0),
    ("Virginia Beach", 15.8),
    ("Vladivostok", 4.9),
    ("Warsaw", 8.5),
    ("Washington, D.C.", 14.6),
    ("Wau", 27.8),
    ("Wellington", 12.9),
    ("Whitehorse", -0.1),
    ("Wichita", 13.9),
    ("Willemstad", 28.0),
    ("Winnipeg", 3.0),
    ("Wrocław", 9.6),
    ("Xi'an", 14.1),
    ("Yakutsk", -8.8),
    ("Yangon", 27.5),
    ("Yaoundé", 23.8),
    ("Yellowknife", -4.3),
    ("Yerevan", 12.4),
    ("Yinchuan", 9.0),
    ("Zagreb", 10.7),
    ("Zanzibar City", 26.0),
    ("Zürich", 9.3),
];

/// Standard normal samples two at a time (Marsaglia's polar method: one logarithm and one square
/// root per pair, no trigonometry), deterministic for the generator's seed.
#[derive(Debug, Clone)]
pub struct NormalPairs {
    rng: SplitMix64,
    spare: Option<f64>,
}

impl NormalPairs {
    /// Samples drawn from `rng`.
    pub fn new(rng: SplitMix64) -> Self {
        NormalPairs { rng, spare: None }
    }

    /// The next standard normal sample.
    #[inline]
    pub fn sample(&mut self) -> f64 {
        if let Some(spare) = self.spare.take() {
            return spare;
        }
        loop {
            let x = 2.0 * self.rng.unit_f64() - 1.0;
            let y = 2.0 * self.rng.unit_f64() - 1.0;
            let radius_squared = x * x + y * y;
            if radius_squared > 0.0 && radius_squared < 1.0 {
                let scale = (-2.0 * radius_squared.ln() / radius_squared).sqrt();
                self.spare = Some(y * scale);
                return x * scale;
            }
        }
    }
}

/// "00" to "99", for writing numbers two digits at a time.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// The most bytes one generated line can take (the longest is under 256).
const LINE_CAPACITY: usize = 512;

/// One output line under construction in a stack array: numbers and short fields are written
/// with fixed-size stores instead of a `memcpy` call each (which dominated the generators'
/// profile), and the finished line is appended to the output in one copy.
struct Line {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
}

/// A field of at most 16 bytes, zero-padded to 16 so it is copied with one fixed-size store.
#[derive(Debug, Clone, Copy)]
struct PaddedText {
    bytes: [u8; 16],
    len: usize,
}

impl PaddedText {
    const fn new(text: &str) -> Self {
        let source = text.as_bytes();
        assert!(source.len() <= 16, "a padded field holds at most 16 bytes");
        let mut bytes = [0u8; 16];
        let mut i = 0;
        while i < source.len() {
            bytes[i] = source[i];
            i += 1;
        }
        PaddedText {
            bytes,
            len: source.len(),
        }
    }

    const fn list<const N: usize>(texts: [&str; N]) -> [PaddedText; N] {
        let mut padded = [PaddedText::new(""); N];
        let mut i = 0;
        while i < N {
            padded[i] = PaddedText::new(texts[i]);
            i += 1;
        }
        padded
    }
}

impl Line {
    fn new() -> Self {
        Line {
            bytes: [0; LINE_CAPACITY],
            len: 0,
        }
    }

    #[cfg(test)]
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Appends the line to `out` and starts an empty one.
    #[inline]
    fn finish_into(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes[..self.len]);
        self.len = 0;
    }

    #[inline]
    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// Appends `text` (meant for literals, whose length the compiler knows).
    #[inline]
    fn push_text(&mut self, text: &[u8]) {
        self.bytes[self.len..self.len + text.len()].copy_from_slice(text);
        self.len += text.len();
    }

    #[inline]
    fn push_padded(&mut self, field: &PaddedText) {
        self.bytes[self.len..self.len + 16].copy_from_slice(&field.bytes);
        self.len += field.len;
    }

    /// Appends the decimal digits of `value`.
    #[inline]
    fn push_decimal(&mut self, value: u64) {
        self.push_zero_padded(value, 1);
    }

    /// Appends `value` in at least `width` digits, zero-padded on the left (as `{value:0width$}`).
    /// Two digits per division (a table of pairs), since the divisions form the critical path.
    #[inline(always)]
    fn push_zero_padded(&mut self, value: u64, width: usize) {
        let digits = value.checked_ilog10().map_or(1, |log| log as usize + 1);
        let end = self.len + digits.max(width);
        let padding_end = end - digits;
        if padding_end - self.len <= 16 {
            // Padding is short; a fixed 16-byte store (before the digits) avoids a `memset` call.
            self.bytes[self.len..self.len + 16].fill(b'0');
        } else {
            self.bytes[self.len..padding_end].fill(b'0');
        }
        let mut position = end;
        let mut rest = value;
        while rest >= 100 {
            let pair = (rest % 100) as usize * 2;
            rest /= 100;
            position -= 2;
            self.bytes[position..position + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        }
        if rest >= 10 {
            let pair = rest as usize * 2;
            position -= 2;
            self.bytes[position..position + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        } else {
            position -= 1;
            self.bytes[position] = b'0' + rest as u8;
        }
        self.len = end;
    }

    /// Appends `value` (below 100) as exactly two digits.
    #[inline]
    fn push_two_digits(&mut self, value: u64) {
        let pair = (value % 100) as usize * 2;
        self.bytes[self.len..self.len + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        self.len += 2;
    }

    /// Appends `units.cents` (two decimal places) for an amount in cents.
    #[inline]
    fn push_cents(&mut self, cents: u64) {
        self.push_decimal(cents / 100);
        self.push(b'.');
        self.push_two_digits(cents % 100);
    }
}

/// Formats epoch milliseconds as ISO 8601 UTC (`YYYY-MM-DDTHH:MM:SS.mmmZ`), keeping the date
/// part of the last day seen, since generated times advance slowly.
#[derive(Debug, Default)]
struct IsoMillisFormatter {
    day: Option<i64>,
    date_prefix: Vec<u8>,
}

impl IsoMillisFormatter {
    fn push(&mut self, line: &mut Line, time_ms: i64) {
        let (days, ms_of_day) = (
            time_ms.div_euclid(86_400_000),
            time_ms.rem_euclid(86_400_000) as u64,
        );
        if self.day != Some(days) {
            let (year, month, day) = quiver_kernels::functions::civil_from_days(days);
            self.date_prefix = format!("{year:04}-{month:02}-{day:02}T").into_bytes();
            self.day = Some(days);
        }
        line.push_text(&self.date_prefix);
        line.push_two_digits(ms_of_day / 3_600_000);
        line.push(b':');
        line.push_two_digits(ms_of_day / 60_000 % 60);
        line.push(b':');
        line.push_two_digits(ms_of_day / 1_000 % 60);
        line.push(b'.');
        line.push_zero_padded(ms_of_day % 1_000, 3);
        line.push(b'Z');
    }
}

/// Symbols and categories the trade generator draws from.
const SYMBOLS: [&str; 10] = [
    "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "XOM",
];
const CATEGORIES: [&str; 10] = [
    "electronics",
    "books",
    "clothing",
    "food",
    "toys",
    "garden",
    "sports",
    "music",
    "health",
    "auto",
];
const SYMBOLS_PADDED: [PaddedText; 10] = PaddedText::list(SYMBOLS);
const CATEGORIES_PADDED: [PaddedText; 10] = PaddedText::list(CATEGORIES);

/// The schema of the records [`trades`] generates.
pub fn trade_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("trader_id", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new("quantity", DataType::Int64, false),
        Field::new(
            "trade_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            false,
        ),
        Field::new("category", DataType::Utf8, false),
        Field::new("amount", DataType::Decimal128(18, 2), false),
    ]))
}

/// Generates `rows` trading records: trader_id, symbol, price, quantity, trade_time, plus the
/// `category` / `amount` (decimal, 2 places) fields of the GROUP BY stream.
pub fn trades(rows: usize, traders: u64, seed: u64) -> Vec<Record> {
    let mut rng = SplitMix64::new(seed);
    let trader_names: Vec<Arc<str>> = (0..traders.max(1))
        .map(|i| Arc::from(format!("trader_{i}")))
        .collect();
    let start_ms: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
                                           // Field names are shared, as a source decoding one schema would share them.
    let names: [Arc<str>; 7] = [
        "trader_id",
        "symbol",
        "price",
        "quantity",
        "trade_time",
        "category",
        "amount",
    ]
    .map(Arc::from);
    (0..rows)
        .map(|i| {
            let price_cents = 1_000 + rng.below(99_000) as i64;
            let mut record = Record::with_capacity(7);
            record.set(
                names[0].clone(),
                &*trader_names[rng.below(traders.max(1)) as usize],
            );
            record.set(
                names[1].clone(),
                SYMBOLS[rng.below(SYMBOLS.len() as u64) as usize],
            );
            record.set(names[2].clone(), price_cents as f64 / 100.0);
            record.set(names[3].clone(), 1 + rng.below(1_000) as i64);
            record.set(
                names[4].clone(),
                Timestamp::millis(start_ms + i as i64 * 10 + rng.below(10) as i64),
            );
            record.set(
                names[5].clone(),
                CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize],
            );
            record.set(
                names[6].clone(),
                Decimal {
                    mantissa: i128::from(price_cents),
                    precision: 18,
                    scale: 2,
                },
            );
            record
        })
        .collect()
}

/// [`trades`] as Arrow batches of the default size, through the ingest path a source uses.
pub fn trade_batches(
    rows: usize,
    traders: u64,
    seed: u64,
) -> quiver_core::Result<Vec<arrow::record_batch::RecordBatch>> {
    let mut batcher = quiver_ingest::RecordBatcher::with_schema(
        trade_schema(),
        quiver_ingest::IngestConfig::default(),
    )?;
    let mut batches = Vec::new();
    for record in &trades(rows, traders, seed) {
        batches.extend(batcher.push(record)?);
    }
    batches.extend(batcher.finish()?);
    Ok(batches)
}

/// Header of the H2O db-benchmark groupby table.
pub const H2O_HEADER: &str = "id1,id2,id3,id4,id5,id6,v1,v2,v3\n";

/// Writes `rows` lines of the H2O db-benchmark groupby table (`groupby-datagen.R`, no NAs,
/// unsorted) for a table of `total_rows` rows and `groups` groups K: `id1`, `id2` uniform over
/// `id001..idK`, `id3` over `id0000000001..id(N/K)`, `id4`, `id5` uniform in `1..=K`, `id6` in
/// `1..=N/K`, `v1` in `1..=5`, `v2` in `1..=15`, `v3` uniform in `[0, 100)` with 6 decimals.
pub fn h2o_groupby_lines(rows: u64, total_rows: u64, groups: u64, seed: u64, out: &mut Vec<u8>) {
    let groups = groups.max(1);
    let small = (total_rows / groups).max(1);
    let mut rng = SplitMix64::new(seed);
    let mut line = Line::new();
    for _ in 0..rows {
        let id1 = 1 + rng.below(groups);
        let id2 = 1 + rng.below(groups);
        let id3 = 1 + rng.below(small);
        let id4 = 1 + rng.below(groups);
        let id5 = 1 + rng.below(groups);
        let id6 = 1 + rng.below(small);
        let v1 = 1 + rng.below(5);
        let v2 = 1 + rng.below(15);
        // Micro-units, so the decimal text is exact.
        let v3 = rng.below(100_000_000);
        line.push_text(b"id");
        line.push_zero_padded(id1, 3);
        line.push_text(b",id");
        line.push_zero_padded(id2, 3);
        line.push_text(b",id");
        line.push_zero_padded(id3, 10);
        for small_value in [id4, id5, id6, v1, v2] {
            line.push(b',');
            line.push_decimal(small_value);
        }
        line.push(b',');
        line.push_decimal(v3 / 1_000_000);
        line.push(b'.');
        line.push_zero_padded(v3 % 1_000_000, 6);
        line.push(b'\n');
        line.finish_into(out);
    }
}

/// Writes `rows` 1BRC measurement lines over `stations` stations to `out`.
pub fn onebrc_lines(rows: u64, stations: usize, seed: u64, out: &mut Vec<u8>) {
    let stations = &STATIONS[..stations.clamp(1, STATIONS.len())];
    let mut rng = SplitMix64::new(seed);
    let mut normal = NormalPairs::new(SplitMix64::new(rng.next_u64()));
    for _ in 0..rows {
        let (name, mean) = stations[rng.below(stations.len() as u64) as usize];
        let tenths = ((mean + normal.sample() * 10.0) * 10.0)
            .round()
            .clamp(-999.0, 999.0) as i64;
        out.extend_from_slice(name.as_bytes());
        out.push(b';');
        if tenths < 0 {
            out.push(b'-');
        }
        let magnitude = tenths.unsigned_abs();
        out.extend_from_slice(itoa::Buffer::new().format(magnitude / 10).as_bytes());
        out.push(b'.');
        out.push(b'0' + (magnitude % 10) as u8);
        out.push(b'\n');
    }
}

/// How [`trades_text`] writes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradesFormat {
    /// One JSON object per line; `trade_time` as epoch milliseconds.
    JsonLines,
    /// CSV rows (header: [`TRADES_CSV_HEADER`]); `trade_time` as ISO 8601 UTC with milliseconds.
    Csv,
}

/// The header line of [`TradesFormat::Csv`].
pub const TRADES_CSV_HEADER: &str = "trader_id,symbol,price,quantity,trade_time,category,amount\n";

/// Writes `rows` trading records (same fields as [`trades`]) in `format`; `first_index`
/// positions the block in time so blocks concatenate into one ordered stream.
pub fn trades_text(
    rows: u64,
    traders: u64,
    seed: u64,
    first_index: u64,
    format: TradesFormat,
    out: &mut Vec<u8>,
) {
    let mut rng = SplitMix64::new(seed);
    let start_ms: i64 = 1_767_225_600_000;
    let mut iso_time = IsoMillisFormatter::default();
    let mut line = Line::new();
    for i in first_index..first_index + rows {
        let price_cents = 1_000 + rng.below(99_000);
        let trader = rng.below(traders.max(1));
        let symbol = &SYMBOLS_PADDED[rng.below(SYMBOLS.len() as u64) as usize];
        let quantity = 1 + rng.below(1_000);
        let time_ms = start_ms + i as i64 * 10 + rng.below(10) as i64;
        let category = &CATEGORIES_PADDED[rng.below(CATEGORIES.len() as u64) as usize];
        match format {
            TradesFormat::JsonLines => {
                line.push_text(br#"{"trader_id":"trader_"#);
                line.push_decimal(trader);
                line.push_text(br#"","symbol":""#);
                line.push_padded(symbol);
                line.push_text(br#"","price":"#);
                line.push_cents(price_cents);
                line.push_text(br#","quantity":"#);
                line.push_decimal(quantity);
                line.push_text(br#","trade_time":"#);
                if time_ms < 0 {
                    line.push(b'-');
                }
                line.push_decimal(time_ms.unsigned_abs());
                line.push_text(br#","category":""#);
                line.push_padded(category);
                line.push_text(br#"","amount":"#);
                line.push_cents(price_cents);
                line.push_text(b"}\n");
            }
            TradesFormat::Csv => {
                line.push_text(b"trader_");
                line.push_decimal(trader);
                line.push(b',');
                line.push_padded(symbol);
                line.push(b',');
                line.push_cents(price_cents);
                line.push(b',');
                line.push_decimal(quantity);
                line.push(b',');
                iso_time.push(&mut line, time_ms);
                line.push(b',');
                line.push_padded(category);
                line.push(b',');
                line.push_cents(price_cents);
                line.push(b'\n');
            }
        }
        line.finish_into(out);
    }
}

/// Runs `generate(block, buffer)` for blocks `0..total_blocks` on `generators` threads and
/// `write(block, buffer)` for each in block order on the calling thread. A fixed pool of buffers
/// bounds the memory and is reused (fresh buffers cost a page fault per 4 KiB); a thread takes
/// a buffer before it takes a block number, so the lowest unfinished block always has one and
/// the writer never waits on a block that cannot start. There is no barrier between rounds:
/// a thread that finishes takes the next block at once.
pub fn write_blocks_in_order(
    total_blocks: u64,
    generators: usize,
    generate: impl Fn(u64, &mut Vec<u8>) + Sync,
    mut write: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let pool_buffers = 4 * generators;
    let (free_sender, free_receiver) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..pool_buffers {
        // The receiver lives until the end of this function.
        let _ = free_sender.send(Vec::new());
    }
    let free_receiver = std::sync::Mutex::new(free_receiver);
    let (done_sender, done_receiver) = std::sync::mpsc::channel::<(u64, Vec<u8>)>();
    let next_block = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..generators {
            let done_sender = done_sender.clone();
            let (free_receiver, next_block, generate) = (&free_receiver, &next_block, &generate);
            scope.spawn(move || loop {
                // A poisoned lock or a closed channel means the writer stopped: so do we.
                let buffer = match free_receiver.lock() {
                    Ok(receiver) => receiver.recv(),
                    Err(_) => return,
                };
                let Ok(mut buffer) = buffer else { return };
                let block = next_block.fetch_add(1, Ordering::Relaxed);
                if block >= total_blocks {
                    return;
                }
                buffer.clear();
                generate(block, &mut buffer);
                if done_sender.send((block, buffer)).is_err() {
                    return;
                }
            });
        }
        drop(done_sender);
        let mut pending = std::collections::BTreeMap::new();
        let mut next_to_write = 0;
        let result = (|| {
            while next_to_write < total_blocks {
                let Ok((block, buffer)) = done_receiver.recv() else {
                    return Err(std::io::Error::other("a generator thread stopped early"));
                };
                pending.insert(block, buffer);
                while let Some(buffer) = pending.remove(&next_to_write) {
                    write(next_to_write, &buffer)?;
                    let _ = free_sender.send(buffer);
                    next_to_write += 1;
                }
            }
            Ok(())
        })();
        // Generators waiting for a buffer see the pool closed and stop.
        drop(free_sender);
        drop(done_receiver);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_written_in_order_whatever_the_threads_and_timing() {
        for generators in [1, 2, 3, 8] {
            for total_blocks in [0, 1, 5, 200] {
                let mut written = Vec::new();
                write_blocks_in_order(
                    total_blocks,
                    generators,
                    |block, buffer| {
                        // Uneven work, so later blocks often finish first.
                        let spin = SplitMix64::new(block).below(20_000);
                        let mut sum = 0u64;
                        for i in 0..spin {
                            sum = sum.wrapping_add(std::hint::black_box(i));
                        }
                        std::hint::black_box(sum);
                        buffer.extend_from_slice(&block.to_le_bytes());
                    },
                    |block, buffer| {
                        assert_eq!(buffer, block.to_le_bytes());
                        written.push(block);
                        Ok(())
                    },
                )
                .unwrap();
                assert_eq!(written, (0..total_blocks).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn a_failed_write_stops_the_generators_and_is_reported() {
        for generators in [1, 2, 4] {
            let generated = std::sync::atomic::AtomicU64::new(0);
            let result = write_blocks_in_order(
                1_000_000,
                generators,
                |block, buffer| {
                    generated.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    buffer.push(block as u8);
                },
                |block, _| {
                    if block == 3 {
                        Err(std::io::Error::other("disk full"))
                    } else {
                        Ok(())
                    }
                },
            );
            assert_eq!(result.unwrap_err().to_string(), "disk full");
            // The buffer pool bounds how far generation runs ahead of the failed write.
            assert!(generated.load(std::sync::atomic::Ordering::Relaxed) < 100);
        }
    }

    #[test]
    fn generators_are_deterministic() {
        assert_eq!(trades(50, 5, 7), trades(50, 5, 7));
        assert_ne!(trades(50, 5, 7), trades(50, 5, 8));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        onebrc_lines(100, 10, 1, &mut a);
        onebrc_lines(100, 10, 1, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.iter().filter(|&&c| c == b'\n').count(), 100);
    }

    #[test]
    fn hand_written_number_formatting_matches_the_format_macro() {
        let mut rng = SplitMix64::new(3);
        let mut line = Line::new();
        for _ in 0..100_000 {
            let value = match rng.below(4) {
                0 => rng.below(10),
                1 => rng.below(100_000),
                2 => rng.next_u64(),
                _ => u64::MAX - rng.below(3),
            };
            let width = rng.below(22) as usize;
            line.len = 0;
            line.push_zero_padded(value, width);
            assert_eq!(line.as_bytes(), format!("{value:0width$}").as_bytes());
            line.len = 0;
            line.push_decimal(value);
            assert_eq!(line.as_bytes(), value.to_string().as_bytes());
            let cents = value % 10_000_000_000;
            line.len = 0;
            line.push_cents(cents);
            assert_eq!(
                line.as_bytes(),
                format!("{}.{:02}", cents / 100, cents % 100).as_bytes()
            );
        }
    }

    #[test]
    fn iso_times_match_the_calendar_reference() {
        let reference = |time_ms: i64| {
            let (days, ms_of_day) = (
                time_ms.div_euclid(86_400_000),
                time_ms.rem_euclid(86_400_000),
            );
            let (year, month, day) = quiver_kernels::functions::civil_from_days(days);
            format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
                ms_of_day / 3_600_000,
                ms_of_day / 60_000 % 60,
                ms_of_day / 1_000 % 60,
                ms_of_day % 1_000
            )
        };
        let mut formatter = IsoMillisFormatter::default();
        let mut rng = SplitMix64::new(11);
        let mut sequential_ms = 1_767_225_600_000 - 5_000;
        let mut line = Line::new();
        for step in 0..200_000 {
            // Runs of nearby times (the generator's case) mixed with jumps anywhere in years
            // 0..=9999, including times just before and after midnight.
            let time_ms = if step % 7 == 0 {
                rng.below(315_537_897_600_000) as i64 - 62_167_219_200_000
            } else {
                sequential_ms += rng.below(3_000) as i64;
                sequential_ms
            };
            line.len = 0;
            formatter.push(&mut line, time_ms);
            assert_eq!(
                String::from_utf8_lossy(line.as_bytes()),
                reference(time_ms),
                "{time_ms}"
            );
        }
    }

    #[test]
    fn h2o_lines_match_the_format_macro_reference() {
        use std::fmt::Write;
        let (rows, total_rows, groups, seed) = (5_000, 1_000_000, 1_500, 9);
        let mut expected = String::new();
        let small = total_rows / groups;
        let mut rng = SplitMix64::new(seed);
        for _ in 0..rows {
            let ids: Vec<u64> = [groups, groups, small, groups, groups, small, 5, 15]
                .iter()
                .map(|&bound| 1 + rng.below(bound))
                .collect();
            let v3 = rng.below(100_000_000);
            let _ = writeln!(
                expected,
                "id{:03},id{:03},id{:010},{},{},{},{},{},{}.{:06}",
                ids[0],
                ids[1],
                ids[2],
                ids[3],
                ids[4],
                ids[5],
                ids[6],
                ids[7],
                v3 / 1_000_000,
                v3 % 1_000_000
            );
        }
        let mut actual = Vec::new();
        h2o_groupby_lines(rows, total_rows, groups, seed, &mut actual);
        assert_eq!(String::from_utf8_lossy(&actual), expected);
    }

    #[test]
    fn trade_lines_match_the_format_macro_reference() {
        use std::fmt::Write;
        let (rows, traders, seed, first_index) = (20_000, 37, 4, 8_639_990);
        for format in [TradesFormat::Csv, TradesFormat::JsonLines] {
            let mut expected = String::new();
            let mut rng = SplitMix64::new(seed);
            for i in first_index..first_index + rows {
                let price_cents = 1_000 + rng.below(99_000);
                let trader = rng.below(traders);
                let symbol = SYMBOLS[rng.below(SYMBOLS.len() as u64) as usize];
                let quantity = 1 + rng.below(1_000);
                let time_ms = 1_767_225_600_000 + i as i64 * 10 + rng.below(10) as i64;
                let category = CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize];
                let (units, cents) = (price_cents / 100, price_cents % 100);
                let _ = match format {
                    TradesFormat::JsonLines => writeln!(
                        expected,
                        r#"{{"trader_id":"trader_{trader}","symbol":"{symbol}","price":{units}.{cents:02},"quantity":{quantity},"trade_time":{time_ms},"category":"{category}","amount":{units}.{cents:02}}}"#,
                    ),
                    TradesFormat::Csv => {
                        let (days, ms) = (
                            time_ms.div_euclid(86_400_000),
                            time_ms.rem_euclid(86_400_000),
                        );
                        let (year, month, day) = quiver_kernels::functions::civil_from_days(days);
                        writeln!(
                            expected,
                            "trader_{trader},{symbol},{units}.{cents:02},{quantity},\
                             {year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z,\
                             {category},{units}.{cents:02}",
                            ms / 3_600_000,
                            ms / 60_000 % 60,
                            ms / 1_000 % 60,
                            ms % 1_000
                        )
                    }
                };
            }
            let mut actual = Vec::new();
            trades_text(rows, traders, seed, first_index, format, &mut actual);
            assert_eq!(String::from_utf8_lossy(&actual), expected, "{format:?}");
        }
    }

    #[test]
    fn normal_samples_have_the_standard_moments() {
        let mut normal = NormalPairs::new(SplitMix64::new(5));
        let samples: Vec<f64> = (0..400_000).map(|_| normal.sample()).collect();
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let variance =
            samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / samples.len() as f64;
        let within_one = samples.iter().filter(|x| x.abs() < 1.0).count() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((variance - 1.0).abs() < 0.01, "{variance}");
        // P(|Z| < 1) = 0.6827.
        assert!((within_one / samples.len() as f64 - 0.6827).abs() < 0.005);
    }
}
